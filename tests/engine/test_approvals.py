"""Approvals, in-process: an approval state and a gate wait for a person (no worker held);
decisions are checked (approvers, four-eyes, outcomes, edits), applied once, kept when they
come early; timeouts and escalation come from the database; a stopped run withdraws them."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from django.utils import timezone

from orchestrator.engine import approvals
from orchestrator.engine.approval_access import decidable_by
from orchestrator.engine.approval_timers import due_approvals
from orchestrator.engine.errors import ApprovalRefused, DefinitionError
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.runs import cancel_run, redrive_run, start_run
from orchestrator.engine.sweeper import sweep
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    ApprovalRequest,
    ApprovalStatus,
    AttemptKind,
    AttemptStatus,
    Event,
    EventKind,
    FailureMode,
    Run,
    RunStatus,
)

from ..workflows import task

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


@pytest.fixture
def people(django_user_model):
    """A requester, two approvers (group "finance"), a manager (group "managers"), an outsider
    (who may view runs)."""
    finance, managers = Group.objects.create(name="finance"), Group.objects.create(name="managers")
    made = {name: django_user_model.objects.create_user(name, password="pw")
            for name in ("requester", "ann", "bob", "manager", "outsider")}
    for name in ("ann", "bob"):
        made[name].groups.add(finance)
    made["manager"].groups.add(managers)
    made["outsider"].user_permissions.add(Permission.objects.get(codename="view_run"))  # any unrelated right
    return made


def play(run: Run, rounds: int = 50) -> Run:
    """Run every due scheduled attempt of the run until none is left; the run, fresh."""
    for _ in range(rounds):
        due = list(run.attempts.filter(Q(not_before__isnull=True) | Q(not_before__lte=timezone.now()),
                                       status=AttemptStatus.SCHEDULED).values_list("pk", flat=True))
        if not due:
            break
        for attempt_id in due:
            run_attempt(attempt_id)
    run.refresh_from_db()
    return run


def refund_flow(name: str = "refund", **review: Any) -> str:
    publish({
        "name": name, "start_at": "prepare",
        "states": {
            "prepare": task("test.answer", args={"output": {"amount": 120}}, result_path="draft", next="review"),
            "review": {"type": "approval", "title": "Refund 120", "approvers": {"groups": ["finance"]},
                       "next": "pay", "reject": "closed", "outcomes": {"ask_more": "asked"}, **review},
            "pay": task("demo.noop", end=True),
            "closed": {"type": "succeed"},
            "asked": {"type": "succeed"},
        },
    })
    return name


def pending(run: Run) -> ApprovalRequest:
    return ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)


def test_an_approval_state_waits_without_a_worker_and_approve_goes_on(people):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    assert run.status == RunStatus.WAITING
    waiting = run.attempts.get(state_name="review")
    assert waiting.status == AttemptStatus.WAITING and not waiting.worker and waiting.lease_expires_at is None
    request = pending(run)
    assert request.proposed["draft"] == {"amount": 120} and request.requested_by == people["requester"]
    approvals.decide(request.pk, people["ann"], "approve", "fine by me")
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["review"] == {"outcome": "approve", "decided_by": "ann", "comment": "fine by me",
                                     "timed_out": False, "edited": False}
    decided = Event.objects.get(run=run, kind=EventKind.APPROVAL_DECIDED)
    assert decided.actor == people["ann"] and decided.data["outcome"] == "approve"
    assert run.human_wait_seconds > 0


@pytest.mark.parametrize(("outcome", "ends_in"), [("reject", "closed"), ("ask_more", "asked")])
def test_reject_and_labelled_outcomes_lead_to_their_states(people, outcome, ends_in):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    approvals.decide(pending(run).pk, people["bob"], outcome)
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED
    assert list(run.attempts.order_by("id").values_list("state_name", flat=True)) == ["prepare", "review"]
    assert Event.objects.filter(run=run, kind=EventKind.RUN_SUCCEEDED, state_name=ends_in).exists()


def test_a_reject_without_a_reject_state_fails_the_run_as_rejected(people):
    publish({"name": "bare", "start_at": "review", "states": {
        "review": {"type": "approval", "next": "done"}, "done": task("demo.noop", end=True)}})
    Group.objects.get(name="finance").permissions.add(*_decide_permission())
    run = start_run("bare", user=people["requester"])[0]
    approvals.decide(pending(run).pk, people["ann"], "reject", "too risky")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.REJECTED
    assert "rejected by ann: too risky" in run.error["message"]


def _decide_permission() -> list[Any]:
    return list(Permission.objects.filter(codename="decide_approval"))


def test_four_eyes_refuses_the_requester_and_outsiders_are_refused(people):
    people["requester"].groups.add(Group.objects.get(name="finance"))
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    request = pending(run)
    with pytest.raises(ApprovalRefused, match="four-eyes"):
        approvals.decide(request.pk, people["requester"], "approve")
    with pytest.raises(ApprovalRefused, match="not among those who may decide .group finance"):
        approvals.decide(request.pk, people["outsider"], "approve")
    with pytest.raises(ApprovalRefused, match="'maybe' is not an outcome"):
        approvals.decide(request.pk, people["ann"], "maybe")
    assert pending(run).pk == request.pk  # nothing was decided
    assert list(decidable_by(people["ann"])) == [request]
    assert list(decidable_by(people["requester"])) == [] and list(decidable_by(people["outsider"])) == []


def test_four_eyes_can_be_turned_off(people):
    people["requester"].groups.add(Group.objects.get(name="finance"))
    run = play(start_run(refund_flow(four_eyes=False), user=people["requester"])[0])
    approvals.decide(pending(run).pk, people["requester"], "approve")
    assert play(run).status == RunStatus.SUCCEEDED


def test_a_second_decision_is_refused_naming_who_decided_and_when(people):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    request = pending(run)
    approvals.decide(request.pk, people["ann"], "approve")
    with pytest.raises(ApprovalRefused, match=r"already decided: approve by ann at \d{4}-"):
        approvals.decide(request.pk, people["bob"], "reject")
    assert play(run).status == RunStatus.SUCCEEDED


def test_two_people_deciding_at_once_one_wins(people):
    from .test_subworkflows import race

    run = play(start_run(refund_flow(), user=people["requester"])[0])
    request = pending(run)
    errors = race(lambda: approvals.decide(request.pk, people["ann"], "approve"),
                  lambda: approvals.decide(request.pk, people["bob"], "reject"))
    assert len(errors) == 1 and isinstance(errors[0], ApprovalRefused)
    assert "already decided" in str(errors[0])
    assert Event.objects.filter(run=run, kind=EventKind.APPROVAL_DECIDED).count() == 1
    request.refresh_from_db()
    loser = "bob" if request.decided_by == people["ann"] else "ann"
    assert loser not in str(errors[0]).split(" by ")[1]


def test_edited_data_replaces_the_editable_path(people):
    run = play(start_run(refund_flow(editable="draft.amount"), user=people["requester"])[0])
    approvals.decide(pending(run).pk, people["ann"], "approve", data=90)
    run = play(run)
    assert run.context["draft"] == {"amount": 90}
    assert run.attempts.get(state_name="pay").status == AttemptStatus.SUCCEEDED
    assert run.context["review"]["edited"] is True


def test_an_edit_is_refused_where_the_definition_allows_none(people):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    with pytest.raises(ApprovalRefused, match="does not let reviewers edit"):
        approvals.decide(pending(run).pk, people["ann"], "approve", data=1)


def gated_flow(name: str = "gated", **gate: Any) -> str:
    publish({"name": name, "start_at": "draft", "states": {
        "draft": task("test.answer", args={"output": {"text": "Dear customer"}}, next="send",
                      requires_approval={"approvers": {"groups": ["finance"]}, "editable": True, **gate},
                      output_schema={"type": "object", "required": ["text"]}),
        "send": task("test.answer", input_path="draft", args={"seen": True}, end=True),
    }})
    return name


def test_a_gate_holds_the_transition_until_approved_with_edits(people):
    run = play(start_run(gated_flow(), user=people["requester"])[0])
    gate = run.attempts.get(kind=AttemptKind.GATE)
    assert run.status == RunStatus.WAITING and gate.state_name == "draft" and gate.status == AttemptStatus.WAITING
    assert not run.attempts.filter(state_name="send").exists()
    request = pending(run)
    assert request.gate and request.leads_to == "send" and request.proposed["draft"] == {"text": "Dear customer"}
    with pytest.raises(ApprovalRefused, match="breaks the step's output contract"):
        approvals.decide(request.pk, people["ann"], "approve", data={"body": "no text field"})
    approvals.decide(request.pk, people["ann"], "approve", data={"text": "Dear Ms Smith"})
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED and run.context["draft"] == {"text": "Dear Ms Smith"}


def test_a_decision_made_ahead_is_kept_and_applied_when_the_run_gets_there(people):
    publish({"name": "later", "start_at": "wait", "states": {
        "wait": {"type": "wait", "seconds": 0.3, "next": "review"},
        "review": {"type": "approval", "approvers": {"groups": ["finance"]}, "next": "done"},
        "done": task("demo.noop", end=True)}})
    run = start_run("later", user=people["requester"])[0]
    with pytest.raises(ApprovalRefused, match="'nope' is not an approval state or gate .* approvals are: review"):
        approvals.decide_ahead(run.pk, "nope", people["ann"], "approve")
    with pytest.raises(ApprovalRefused, match="four-eyes"):
        approvals.decide_ahead(run.pk, "review", people["requester"], "approve")
    kept = approvals.decide_ahead(run.pk, "review", people["ann"], "approve", "pre-approved")
    with pytest.raises(ApprovalRefused, match="already kept .*approve by ann"):
        approvals.decide_ahead(run.pk, "review", people["bob"], "reject")
    assert run.attempts.filter(state_name="review").count() == 0
    time.sleep(0.35)
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED
    kept.refresh_from_db()
    assert kept.attempt is not None and kept.applied_at is not None and kept.decided_by == people["ann"]
    assert run.context["review"]["comment"] == "pre-approved"


def test_a_decision_ahead_for_an_ended_run_is_refused(people):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    cancel_run(run.pk)
    with pytest.raises(ApprovalRefused, match="the run has ended .cancelled."):
        approvals.decide_ahead(run.pk, "review", people["ann"], "approve")


def _make_due(request: ApprovalRequest) -> None:
    ApprovalRequest.objects.filter(pk=request.pk).update(due_at=request.created_at - timedelta(seconds=1))


def test_a_timeout_applies_its_outcome(people):
    run = play(start_run(refund_flow(due_seconds=3600, on_timeout="reject"), user=people["requester"])[0])
    request = pending(run)
    assert due_approvals(request.created_at) == 0  # not due yet
    _make_due(request)
    sweep()
    request.refresh_from_db()
    assert request.outcome == "reject" and request.timed_out and request.decided_by is None
    assert play(run).status == RunStatus.SUCCEEDED and run.context["review"]["timed_out"] is True


def test_escalation_adds_approvers_and_a_new_due_time_then_times_out(people):
    run = play(start_run(refund_flow(due_seconds=60, on_timeout="escalate", escalation={
        "approvers": {"groups": ["managers"]}, "due_seconds": 120, "on_timeout": "approve"}),
        user=people["requester"])[0])
    request = pending(run)
    assert list(decidable_by(people["manager"])) == []
    _make_due(request)
    sweep()
    request.refresh_from_db()
    assert request.escalation_level == 1 and request.status == ApprovalStatus.PENDING
    assert request.due_at > request.escalated_at
    assert list(decidable_by(people["manager"])) == [request] and list(decidable_by(people["ann"])) == [request]
    assert Event.objects.filter(run=run, kind=EventKind.APPROVAL_ESCALATED).count() == 1
    _make_due(request)
    sweep()
    request.refresh_from_db()
    assert request.outcome == "approve" and request.timed_out
    assert play(run).status == RunStatus.SUCCEEDED


def test_cancelling_a_waiting_run_withdraws_its_request(people):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    request = pending(run)
    cancel_run(run.pk, people["ann"])
    request.refresh_from_db()
    assert request.status == ApprovalStatus.CANCELLED
    with pytest.raises(ApprovalRefused, match="withdrawn"):
        approvals.decide(request.pk, people["ann"], "approve")
    assert Event.objects.filter(run=run, kind=EventKind.APPROVAL_CANCELLED).exists()


def test_a_branch_waits_for_approval_while_its_sibling_goes_on(people):
    publish({"name": "fan", "start_at": "both", "states": {
        "both": {"type": "parallel", "next": "done", "branches": {
            "a": {"start_at": "a_review", "states": {
                "a_review": {"type": "approval", "approvers": {"groups": ["finance"]}, "end": True}}},
            "b": {"start_at": "b_work", "states": {"b_work": task("demo.noop", end=True)}}}},
        "done": task("demo.noop", end=True)}})
    run = play(start_run("fan", user=people["requester"])[0])
    assert run.status == RunStatus.RUNNING
    assert run.attempts.get(state_name="b_work").status == AttemptStatus.SUCCEEDED
    approvals.decide(pending(run).pk, people["bob"], "approve")
    assert play(run).status == RunStatus.SUCCEEDED


def test_a_redriven_branch_failure_asks_for_the_withdrawn_approval_again(people, tmp_path):
    publish({"name": "fanfail", "start_at": "both", "states": {
        "both": {"type": "parallel", "end": True, "branches": {
            "a": {"start_at": "a_work", "states": {
                "a_work": task("test.fail_until_flag", next="a_review"),
                "a_review": {"type": "approval", "approvers": {"groups": ["finance"]}, "end": True}}},
            "b": {"start_at": "b_review", "states": {
                "b_review": {"type": "approval", "approvers": {"groups": ["finance"]}, "end": True}}}}}}})
    flag = tmp_path / "flag"
    run = play(start_run("fanfail", {"flag": str(flag)}, user=people["requester"])[0])
    assert run.status == RunStatus.FAILED
    assert ApprovalRequest.objects.get(run=run).status == ApprovalStatus.CANCELLED
    flag.touch()
    run = play(redrive_run(run.pk))
    assert run.status == RunStatus.RUNNING
    assert sorted(pending.state_name for pending in ApprovalRequest.objects.filter(
        run=run, status=ApprovalStatus.PENDING)) == ["a_review", "b_review"]


def test_claiming_shows_who_looks_and_is_refused_to_others(people):
    run = play(start_run(refund_flow(), user=people["requester"])[0])
    request = pending(run)
    approvals.claim(request.pk, people["ann"])
    with pytest.raises(ApprovalRefused, match="ann is looking at it since"):
        approvals.claim(request.pk, people["bob"])
    with pytest.raises(ApprovalRefused, match="not among those"):
        approvals.claim(request.pk, people["outsider"])
    approvals.claim(request.pk, people["ann"], release=True)
    approvals.claim(request.pk, people["bob"])
    assert pending(run).claimed_by == people["bob"]
    kinds = list(Event.objects.filter(run=run, kind__startswith="approval_c").values_list("kind", flat=True))
    assert kinds == [EventKind.APPROVAL_CLAIMED, EventKind.APPROVAL_CLAIMED]


def test_approval_definitions_are_checked():
    with pytest.raises(DefinitionError) as caught:
        publish({"name": "badapproval", "start_at": "review", "states": {
            "review": {"type": "approval", "next": "done", "on_timeout": "maybe", "editable": True,
                       "outcomes": {"approve": "done"}, "approvers": {"permissions": ["orchestrator.nope"]}},
            "done": {"type": "succeed"}}})
    text = str(caught.value) + " ".join(str(f) for f in caught.value.findings)
    assert "outcome 'approve' is built in" in text
    assert "on_timeout is 'maybe'" in text
    assert "on_timeout needs due_seconds" in text
    assert "editable must name the context path" in text
    assert "permission 'orchestrator.nope' does not exist" in text


def test_a_gate_on_a_choice_rule_holds_only_that_transition(people):
    publish({"name": "choosy", "start_at": "size", "states": {
        "size": {"type": "choice", "default": "small", "choices": [
            {"condition": {"path": "input.amount", "op": "gt", "value": 100}, "next": "large",
             "requires_approval": {"approvers": {"groups": ["finance"]}, "title": "Large amount"}}]},
        "large": task("test.answer", args={"output": "large"}, end=True),
        "small": task("test.answer", args={"output": "small"}, end=True)}})
    small = play(start_run("choosy", {"amount": 5}, user=people["requester"])[0])
    assert small.status == RunStatus.SUCCEEDED and not ApprovalRequest.objects.filter(run=small).exists()
    large = play(start_run("choosy", {"amount": 500}, user=people["requester"])[0])
    request = pending(large)
    assert large.status == RunStatus.WAITING and request.edge == "choice:0" and request.leads_to == "large"
    assert request.title == "Large amount" and not large.attempts.filter(state_name="large").exists()
    approvals.decide(request.pk, people["ann"], "approve")
    assert play(large).output == "large"


def test_a_gate_on_a_catch_rule_asks_before_the_error_path_is_taken(people):
    publish({"name": "caught", "start_at": "call", "states": {
        "call": task("demo.always_fails", next="done", catch=[
            {"errors": ["*"], "next": "fallback",
             "requires_approval": {"approvers": {"groups": ["finance"]}, "reject": "given_up"}}]),
        "fallback": task("test.answer", args={"output": "fallback"}, end=True),
        "given_up": task("test.answer", args={"output": "given up"}, end=True),
        "done": task("demo.noop", end=True)}})
    run = play(start_run("caught", user=people["requester"])[0])
    request = pending(run)
    assert request.edge == "catch:0" and request.leads_to == "fallback"
    assert request.proposed["call"]["error"]["type"] == "RuntimeError"  # the error that led here
    approvals.decide(request.pk, people["bob"], "reject", "do not fall back")
    assert play(run).output == "given up"


def test_the_decide_approval_command_keeps_an_early_decision_or_says_why_not(people):
    import io

    from django.core.management import CommandError, call_command

    publish({"name": "later2", "start_at": "wait", "states": {
        "wait": {"type": "wait", "seconds": 60, "next": "review"},
        "review": {"type": "approval", "approvers": {"groups": ["finance"]}, "next": "done"},
        "done": task("demo.noop", end=True)}})
    run = start_run("later2", user=people["requester"])[0]
    with pytest.raises(CommandError, match="refused: four-eyes"):
        call_command("decide_approval", str(run.pk), "review", "approve", "--user", "requester")
    out = io.StringIO()
    call_command("decide_approval", str(run.pk), "review", "approve", "--user", "ann", "--comment", "ok", stdout=out)
    assert "kept until the run reaches it" in out.getvalue()
    assert ApprovalRequest.objects.get(run=run).comment == "ok"
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("decide_approval", str(run.pk), "review", "approve", "--user", "nobody")
