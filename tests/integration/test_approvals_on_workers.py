"""Approvals with real workers: runs wait for people holding no worker; the workers are
SIGKILLed and Redis flushed while they wait; a second set of workers finishes every run once
people decide (approve, reject, a labelled outcome, a gated draft with edits), and the
timeout and escalation timers, kept in the database, fire from the new workers' sweeper."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rq import Worker

from orchestrator.demo import sink
from orchestrator.engine import approvals
from orchestrator.engine.dispatch import redis_connection
from orchestrator.engine.errors import ApprovalRefused
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import ApprovalRequest, ApprovalStatus, AttemptStatus, Event, EventKind, RunStatus
from orchestrator.stack import ensure_demo_role_users

from ..conftest import wait_for
from .real_workers import answer, assert_quiet, settle, start_pool

pytestmark = [pytest.mark.engine, pytest.mark.integration]
REFUND = {"order_id": "A-7", "amount": 300, "customer": "ann@example.com"}


def timed_flow() -> None:
    """Approvals due in a second: one times out to reject, one escalates to the operators and
    then times out to approve; one has a labelled outcome."""
    publish({"name": "timed", "start_at": "review", "states": {
        "review": {"type": "approval", "approvers": {"groups": ["approvers"]}, "due_seconds": 1,
                   "on_timeout": "reject", "reject": "rejected", "next": "approved"},
        "approved": answer("approved", end=True), "rejected": answer("rejected", end=True)}})
    publish({"name": "escalated", "start_at": "review", "states": {
        "review": {"type": "approval", "approvers": {"groups": ["approvers"]}, "due_seconds": 1,
                   "on_timeout": "escalate", "next": "approved",
                   "escalation": {"approvers": {"groups": ["operators"]}, "due_seconds": 1.5, "on_timeout": "approve"}},
        "approved": answer("approved", end=True)}})
    publish({"name": "labelled", "start_at": "review", "states": {
        "review": {"type": "approval", "approvers": {"groups": ["approvers"]}, "next": "approved",
                   "outcomes": {"needs_info": "ask"}},
        "approved": answer("approved", end=True), "ask": answer("asked", end=True)}})


def pending(run) -> ApprovalRequest:
    return wait_for(lambda: ApprovalRequest.objects.filter(run=run, status=ApprovalStatus.PENDING).first(), 30,
                    what=f"run {run.pk} to wait for approval")


def test_waiting_runs_survive_killed_workers_and_a_flushed_redis_and_finish_once_decided(
        workers, sink_path, redis_conn):
    call_command("load_demo", stdout=open(os.devnull, "w"))
    ensure_demo_role_users()
    people = {u.username: u for u in get_user_model().objects.all()}
    timed_flow()
    pool = workers(2)
    runs = {
        "approved": start_run("refund", REFUND, user=people["operator"])[0],
        "rejected": start_run("refund", {**REFUND, "order_id": "A-8"}, user=people["operator"])[0],
        "edited": start_run("drafted_reply", {"customer": "bo@example.com", "customer_name": "Bo",
                                               "message": "Where is my refund?"}, user=people["operator"])[0],
        "labelled": start_run("labelled", user=people["operator"])[0],
    }
    requests = {label: pending(run) for label, run in runs.items()}
    for run in runs.values():  # each waits for a person: no worker holds it
        attempt = run.attempts.get(status=AttemptStatus.WAITING)
        assert attempt.worker == "" and attempt.lease_expires_at is None
    connection = redis_connection()
    wait_for(lambda: all(w.get_state() == "idle" for w in Worker.all(connection=connection)), 15,
             what="the workers to be idle while the runs wait")
    timed = {"timed": start_run("timed", user=people["operator"])[0],
             "escalated": start_run("escalated", user=people["operator"])[0]}
    for process in list(pool.processes):
        pool.kill(process)
    redis_conn.flushdb()
    for run in timed.values():  # the timers are in the database; nobody is there to apply them yet
        pending(run)

    with pytest.raises(ApprovalRefused, match="four-eyes"):
        approvals.decide(requests["approved"].pk, people["operator"], "approve")
    approvals.decide(requests["approved"].pk, people["approver"], "approve", "checked the receipt")
    approvals.decide(requests["rejected"].pk, people["approver"], "reject", "outside the return window")
    approvals.decide(requests["edited"].pk, people["approver"], "approve", data="Hello Bo, it is on its way.")
    approvals.decide(requests["labelled"].pk, people["approver"], "needs_info", "which order?")
    start_pool(workers, 2)

    done = settle({**runs, **timed}, timeout=60)
    assert all(run.status == RunStatus.SUCCEEDED for run in done.values()), {
        label: (run.status, run.error) for label, run in done.items()}
    for label, run in done.items():
        assert_quiet(run, label)
    assert sink.payloads("reversal", sink_path) == [{"order": "A-7", "amount": 300.0}]  # once, the approved one
    assert [p["body"] for p in sink.payloads("reply", sink_path)] == ["Hello Bo, it is on its way."]
    assert done["labelled"].output == "asked"
    assert done["timed"].output == "rejected"
    assert done["escalated"].output == "approved"
    escalated = ApprovalRequest.objects.get(run=done["escalated"])
    assert escalated.escalation_level == 1 and escalated.timed_out and escalated.outcome == "approve"
    assert Event.objects.filter(run=done["escalated"], kind=EventKind.APPROVAL_ESCALATED).count() == 1
    assert sink.stats(sink_path)["duplicate_keys"] == 0


def test_a_waiting_run_cancelled_and_compensated_undoes_its_effects_newest_first_on_workers(
        workers, sink_path, settings):
    """The operator's saga on real workers: the newest effect's compensation fails (its service is
    down) until its retries run out and the run pauses; the operator marks it done by hand; the
    older effect is undone after it, and the run ends compensated."""
    from orchestrator.engine.runs import cancel_run, decide_effect
    from orchestrator.models import Effect, EffectStatus, PauseReason

    from ..engine.test_cancel_and_compensate import two_charges_then_a_person
    from ..workflows import reaches

    two_charges_then_a_person("test.charge_with_fragile_undo")
    start_pool(lambda count: workers(count, extra_env={"RATCHET_COMPENSATION_MAX_ATTEMPTS": "2"}), 1)
    run = start_run("two_charges")[0]
    pending(run)
    cancel_run(run.pk, reason="customer withdrew", compensate=True)
    run = reaches(run, RunStatus.PAUSED, timeout=30)
    assert run.pause_reason == PauseReason.COMPENSATION_FAILED
    fragile = Effect.objects.get(run=run, status=EffectStatus.COMPENSATION_FAILED)
    assert fragile.key == "charge"  # the newest effect is undone first
    assert sink.kinds(sink_path) == ["charge", "charge"]  # nothing undone yet: its service is down
    decide_effect(fragile.pk, "done")
    run = reaches(run, RunStatus.COMPENSATED, timeout=30)
    assert sink.kinds(sink_path) == ["charge", "charge", "undo"]  # then the first charge, once
    assert Effect.objects.get(run=run, key="first").status == EffectStatus.COMPENSATED
