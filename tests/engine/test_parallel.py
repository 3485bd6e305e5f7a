"""Parallel states, in-process: branches as lines of their own, joins (all, quorum, first N,
timeout), reducers and conflict policies, a paused branch that does not strand its siblings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator.demo import sink
from orchestrator.engine import clock
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.runs import cancel_run, decide_effect, start_run
from orchestrator.engine.sweeper import sweep
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    AttemptStatus,
    Effect,
    Event,
    EventKind,
    FailureMode,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    RunStatus,
)

from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def answer(output: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "task", "handler": "test.answer", "args": {"output": output}, **fields}


def branch(*steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A branch of chained steps; the last one ends the branch."""
    states = {}
    for index, (name, state) in enumerate(steps):
        state = dict(state)
        if index + 1 < len(steps):
            state["next"] = steps[index + 1][0]
        else:
            state["end"] = True
        states[name] = state
    return {"start_at": steps[0][0], "states": states}


def fan_out(name: str, branches: dict[str, Any], *, reducer: dict | None = None, join: dict | None = None,
            **parallel: Any) -> str:
    extra_states = parallel.pop("extra_states", {})
    state = {"type": "parallel", "branches": branches, "next": "after", **parallel}
    if reducer:
        state["reducer"] = reducer
    if join:
        state["join"] = join
    publish({"name": name, "start_at": "fan", "states": {
        "fan": state,
        "after": {"type": "task", "handler": "test.answer", "args": {"seen": True}, "end": True},
        **extra_states,
    }})
    return name


def until_idle(run):
    """Play the worker until nothing is due now (branches may still wait on a person or a timer)."""
    while True:
        due = [a.pk for a in run.attempts.filter(status=AttemptStatus.SCHEDULED)
               if a.not_before is None or a.not_before <= clock.now()]
        if not due:
            run.refresh_from_db()
            return run
        for attempt_id in due:
            run_attempt(attempt_id)


def events(run, kind: str) -> list[Event]:
    return list(Event.objects.filter(run=run, kind=kind).order_by("id"))


def test_each_branch_keeps_its_own_context_and_the_join_collects_their_outputs():
    fan_out("collect", {
        "a": branch(("a1", answer({"x": 1}))),
        "b": branch(("b1", answer({"y": 2})), ("b2", answer({"y": 3}, args={"output": {"y": 3}, "seen": True}))),
    })
    run = drain(start_run("collect")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["fan"]["a"] == {"x": 1}
    assert run.context["fan"]["b"]["y"] == 3
    assert "b1" in run.context["fan"]["b"]["seen"] and "a1" not in run.context["fan"]["b"]["seen"]
    assert "a1" not in run.context and "b1" not in run.context  # branch outputs stay in their lines
    lines = {x.branch: x for x in Line.objects.filter(run=run)}
    assert set(lines["b"].context) == {"b1", "b2"} and set(lines["a"].context) == {"a1"}
    attempts = run.attempts.filter(state_name="b2").get()
    assert attempts.branch_path == "fan#1/b" and attempts.line_id == lines["b"].pk
    assert len(events(run, EventKind.JOINED)) == 1
    assert Fork.objects.get(run=run).status == ForkStatus.JOINED


@pytest.mark.parametrize(("policy", "expected"), [("prefer_first", 1), ("prefer_last", 3), ("vote", 2)])
def test_merge_settles_a_disagreement_by_its_policy_and_records_it(policy, expected):
    fan_out(f"merge_{policy}", {
        "a": branch(("a1", answer({"k": 1, "same": "s"}))),
        "b": branch(("b1", answer({"k": 2, "same": "s"}))),
        "c": branch(("c1", answer({"k": 3 if policy != "vote" else 2, "same": "s"}))),
    }, reducer={"strategy": "merge", "on_conflict": policy})
    run = drain(start_run(f"merge_{policy}")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["fan"] == {"k": expected, "same": "s"}
    (conflict,) = events(run, EventKind.AGGREGATION_CONFLICT)
    assert conflict.data["key"] == "k" and conflict.data["chosen"] == expected
    assert conflict.data["values"]["a"] == 1 and conflict.data["policy"] == policy


def test_a_conflict_under_the_error_policy_fails_the_run_as_conflicting_aggregation():
    fan_out("merge_strict", {"a": branch(("a1", answer({"k": 1}))), "b": branch(("b1", answer({"k": 2})))},
            reducer={"strategy": "merge", "on_conflict": "error"})
    run = drain(start_run("merge_strict")[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.CONFLICTING_AGGREGATION
    (conflict,) = events(run, EventKind.AGGREGATION_CONFLICT)
    assert conflict.data["values"] == {"a": 1, "b": 2}
    assert not run.attempts.filter(state_name="after").exists()


def test_highest_score_and_majority_vote_pick_an_output():
    fan_out("scored", {"a": branch(("a1", answer({"score": 0.4, "text": "meh"}))),
                       "b": branch(("b1", answer({"score": 0.9, "text": "good"})))},
            reducer={"strategy": "highest_score"})
    fan_out("voted", {"a": branch(("a1", answer({"label": "spam"}))), "b": branch(("b1", answer({"label": "ham"}))),
                      "c": branch(("c1", answer({"label": "spam"})))},
            reducer={"strategy": "majority_vote", "path": "label"})
    assert drain(start_run("scored")[0]).context["fan"] == {"score": 0.9, "text": "good"}
    assert drain(start_run("voted")[0]).context["fan"] == "spam"


def test_a_tied_vote_follows_the_conflict_policy():
    fan_out("tied", {"a": branch(("a1", answer({"label": "x"}))), "b": branch(("b1", answer({"label": "y"})))},
            reducer={"strategy": "majority_vote", "path": "label", "on_conflict": "prefer_last"})
    run = drain(start_run("tied")[0])
    assert run.context["fan"] == "y" and len(events(run, EventKind.AGGREGATION_CONFLICT)) == 1


def test_a_custom_reducer_merges_the_outputs():
    fan_out("summed", {"a": branch(("a1", answer({"n": 2}))), "b": branch(("b1", answer({"n": 5})))},
            reducer={"strategy": "custom", "handler": "test.sum"})
    assert drain(start_run("summed")[0]).context["fan"] == {"n": 7, "from": ["a", "b"]}


def test_a_quorum_joins_without_the_branch_that_failed():
    # The failing branch is the first to run (its job is first in the queue), whichever branch
    # a worker that ends one takes next: the quorum is met by the other two.
    fan_out("quorum", {"a": branch(("a1", {"type": "task", "handler": "test.fail"})),
                       "b": branch(("b1", answer({"v": 2}))), "c": branch(("c1", answer({"v": 3})))},
            join={"mode": "quorum", "count": 2})
    run = drain(start_run("quorum")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert set(run.context["fan"]) == {"b", "c"}
    assert Line.objects.get(run=run, branch="a").status == LineStatus.FAILED


def test_the_first_branch_to_finish_joins_and_the_others_are_cancelled():
    fan_out("first", {"fast": branch(("f1", answer({"v": "fast"}))),
                      "slow": branch(("s1", {"type": "wait", "seconds": 60}), ("s2", answer({"v": "slow"})))},
            join={"mode": "first", "count": 1})
    run = drain(start_run("first")[0])
    assert run.status == RunStatus.SUCCEEDED and run.context["fan"] == {"fast": {"v": "fast"}}
    assert Line.objects.get(run=run, branch="slow").status == LineStatus.CANCELLED
    assert run.attempts.get(state_name="s1").status == AttemptStatus.CANCELLED


def test_all_branches_needed_and_one_fails_fails_the_parallel_state_and_its_catch_applies():
    fan_out("caught", {"a": branch(("a1", answer({"v": 1}))), "b": branch(("b1", {"type": "task",
                                                                                 "handler": "test.fail"}))},
            catch=[{"errors": ["*"], "next": "recover"}],
            extra_states={"recover": {"type": "task", "handler": "demo.noop", "end": True}})
    run = drain(start_run("caught")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["fan"]["error"]["type"] == "ValueError"
    assert run.attempts.filter(state_name="recover").exists()


def test_a_failed_branch_without_catch_fails_the_run_naming_the_branch_attempt():
    fan_out("uncaught", {"a": branch(("a1", answer({"v": 1}))), "b": branch(("b1", {"type": "task",
                                                                                   "handler": "test.fail"}))})
    run = drain(start_run("uncaught")[0])
    assert run.status == RunStatus.FAILED
    assert run.failed_attempt.state_name == "b1"


def test_a_branch_paused_on_an_uncertain_effect_does_not_strand_its_siblings():
    fan_out("paused_branch", {
        "pay": branch(("charge", {"type": "task", "handler": "test.effect_fails_first",
                                  "args": {"refused": False}})),
        "other": branch(("o1", answer({"v": 1})), ("o2", answer({"v": 2}))),
    })
    run = until_idle(start_run("paused_branch")[0])
    assert run.status == RunStatus.RUNNING  # the run goes on; only the branch waits
    lines = {x.branch: x for x in Line.objects.filter(run=run)}
    assert lines["pay"].status == LineStatus.PAUSED
    assert lines["other"].status == LineStatus.SUCCEEDED  # the sibling finished meanwhile
    effect = Effect.objects.get(run=run)
    assert effect.branch_path == "fan#1/pay"
    decide_effect(effect.pk, "retry")
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED
    assert sink.deliveries(effect.idempotency_key) == 1


def test_branches_that_do_not_join_in_time_fail_as_a_coordination_deadlock():
    fan_out("deadlocked", {"a": branch(("a1", answer({"v": 1}))),
                           "b": branch(("b1", {"type": "wait", "seconds": 600}), ("b2", answer({"v": 2})))},
            join={"timeout_seconds": 30})
    run = until_idle(start_run("deadlocked")[0])
    assert run.status == RunStatus.RUNNING
    Fork.objects.filter(run=run).update(deadline_at=clock.now() - timedelta(seconds=1))
    assert sweep().joins_timed_out == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COORDINATION_DEADLOCK
    assert run.error["type"] == "JoinTimeout" and "1 of the 2" in run.error["message"]


def test_cancelling_a_run_cancels_every_branch():
    fan_out("cancel_fan", {"a": branch(("a1", {"type": "wait", "seconds": 600})),
                           "b": branch(("b1", {"type": "wait", "seconds": 600}))})
    run, _ = start_run("cancel_fan")
    cancel_run(run.pk)
    assert set(Line.objects.filter(run=run).values_list("status", flat=True)) == {LineStatus.CANCELLED}
    assert Fork.objects.get(run=run).status == ForkStatus.CANCELLED
    assert not run.attempts.filter(status__in=(AttemptStatus.SCHEDULED, AttemptStatus.RUNNING)).exists()


def test_a_parallel_inside_a_branch_joins_into_its_branch():
    inner = {"type": "parallel", "end": True, "branches": {
        "x": branch(("x1", answer({"deep": 1}))), "y": branch(("y1", answer({"deep": 2})))}}
    fan_out("nested", {"outer": {"start_at": "inner", "states": {"inner": inner}},
                       "plain": branch(("p1", answer({"flat": True})))})
    run = drain(start_run("nested")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["fan"]["outer"] == {"x": {"deep": 1}, "y": {"deep": 2}}
    assert run.attempts.get(state_name="x1").branch_path == "fan#1/outer/inner#2/x"


def test_redriving_a_run_that_failed_inside_a_branch_reruns_only_what_the_failure_stopped(tmp_path):
    """a succeeded, b failed, c was cancelled mid-wait by the failure: a redrive reruns b's failed
    visit and c's cancelled one; a keeps its checkpoint; the join fires once."""
    from orchestrator.engine.runs import redrive_run

    flag = tmp_path / "stock-arrived"
    fan_out("redrive_branch", {
        "a": branch(("a1", {"type": "task", "handler": "test.counted_sleep"})),
        "b": branch(("b1", {"type": "task", "handler": "test.fail_until_flag", "args": {}})),
        "c": branch(("c1", {"type": "wait", "seconds": 3600}), ("c2", answer({"c": True}))),
    })
    run = drain(start_run("redrive_branch", {"flag": str(flag)})[0])
    assert run.status == RunStatus.FAILED and run.failed_attempt.state_name == "b1"
    flag.touch()
    run = redrive_run(run.pk)
    assert run.status == RunStatus.RUNNING
    fork = Fork.objects.get(run=run)
    assert (fork.status, fork.done, fork.failed) == (ForkStatus.OPEN, 1, 0)
    c1 = run.attempts.filter(state_name="c1").order_by("id")
    assert [a.status for a in c1] == [AttemptStatus.CANCELLED, AttemptStatus.SCHEDULED]
    assert c1.last().not_before > clock.now() + timedelta(seconds=3000)  # the rest of its wait
    c1.filter(status=AttemptStatus.SCHEDULED).update(not_before=None)
    run = until_idle(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert sink.requests(f"exec-{run.pk}-a1") == 1  # the succeeded branch is not run again
    assert run.attempts.filter(state_name="b1").count() == 2
    assert run.context["fan"]["c"] == {"c": True}
    assert len(events(run, EventKind.JOINED)) == 1
    assert sorted(e.data["branch"] for e in events(run, EventKind.BRANCH_RESUMED)) == ["fan#1/b", "fan#1/c"]


def test_redriving_a_failure_inside_a_nested_branch_reopens_both_forks(tmp_path):
    from orchestrator.engine.runs import redrive_run

    flag = tmp_path / "fixed"
    inner = {"type": "parallel", "end": True, "branches": {
        "x": branch(("x1", answer({"deep": 1}))),
        "y": branch(("y1", {"type": "task", "handler": "test.fail_until_flag"}))}}
    fan_out("nested_redrive", {"outer": {"start_at": "inner", "states": {"inner": inner}},
                               "plain": branch(("p1", answer({"flat": True})))})
    run = drain(start_run("nested_redrive", {"flag": str(flag)})[0])
    assert run.status == RunStatus.FAILED
    flag.touch()
    run = drain(redrive_run(run.pk))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.context["fan"]["outer"] == {"x": {"deep": 1}, "y": {"flag": True}}
    assert run.attempts.filter(state_name="x1").count() == 1


def test_a_branch_that_ends_at_once_wins_a_first_join_and_no_other_branch_starts():
    fan_out("instant", {"a": {"start_at": "a_done", "states": {"a_done": {"type": "succeed"}}},
                        "b": branch(("b1", {"type": "wait", "seconds": 600}))}, join={"mode": "first", "count": 1})
    run = drain(start_run("instant")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert not run.attempts.filter(state_name="b1").exists()
    assert Line.objects.get(run=run, branch="b").status == LineStatus.CANCELLED


def test_two_branches_paused_on_the_same_key_are_decided_one_by_one():
    charge = {"type": "task", "handler": "test.effect_fails_first", "args": {"refused": False}}
    fan_out("two_paused", {"a": branch(("pay_a", charge)), "b": branch(("pay_b", charge))})
    run = until_idle(start_run("two_paused")[0])
    assert set(Line.objects.filter(run=run).values_list("status", flat=True)) == {LineStatus.PAUSED}
    effect_b = Effect.objects.get(run=run, branch_path="fan#1/b")
    decide_effect(effect_b.pk, "retry")
    run = until_idle(run)
    lines = {x.branch: x.status for x in Line.objects.filter(run=run)}
    assert lines == {"a": LineStatus.PAUSED, "b": LineStatus.SUCCEEDED}  # only b went on
    decide_effect(Effect.objects.get(run=run, branch_path="fan#1/a").pk, "retry")
    assert drain(run).status == RunStatus.SUCCEEDED
