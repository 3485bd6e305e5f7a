"""Engine transitions driven in-process: the test plays the worker by calling the RQ job
function itself, so each rule of the durability contract is checked precisely and fast."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.demo import sink
from orchestrator.engine.claims import Usage
from orchestrator.engine.errors import InvalidTransition
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.ledger import step_scope
from orchestrator.engine.runs import cancel_run, decide_effect, redrive_run, start_run
from orchestrator.engine.sweeper import sweep
from orchestrator.engine.transitions import claim_attempt, complete_attempt, recover_lost
from orchestrator.models import (
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    FailureMode,
    Run,
    RunStatus,
    StepAttempt,
    Workflow,
    WorkflowVersion,
)
from orchestrator.models.runs import TERMINAL_RUN_STATUSES

from ..workflows import chain, task

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def drain(run: Run, timeout: float = 15, *, every_run: bool = False) -> Run:
    """Play the worker: run every due attempt (of this run, or with ``every_run`` of any run,
    child runs included) until the run stops moving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in TERMINAL_RUN_STATUSES or run.status == RunStatus.PAUSED:
            return run
        scheduled = StepAttempt.objects if every_run else run.attempts
        due = [a.pk for a in scheduled.filter(status=AttemptStatus.SCHEDULED)
               if a.not_before is None or a.not_before <= timezone.now()]
        for attempt_id in due:
            run_attempt(attempt_id)
        if not due:
            time.sleep(0.05)
    raise AssertionError(f"run {run.pk} did not settle: {run.status}")


def test_one_job_runs_a_whole_same_queue_chain_inline():
    chain("inline", ("a", task("demo.noop")), ("b", task("demo.noop")), ("c", task("demo.noop")))
    run, _ = start_run("inline")
    run_attempt(run.attempts.get().pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    attempts = run.attempts.order_by("id")
    assert [a.state_name for a in attempts] == ["a", "b", "c"]
    assert [a.dispatch_count for a in attempts] == [1, 0, 0]  # only the first went through RQ


def test_a_queue_change_goes_through_rq():
    chain("bulkhead", ("a", task("demo.noop")), ("b", task("demo.noop", queue="slow")))
    run, _ = start_run("bulkhead")
    run_attempt(run.attempts.get().pk)
    b = run.attempts.get(state_name="b")
    assert b.status == AttemptStatus.SCHEDULED and b.dispatch_count == 1


def test_every_state_change_leaves_an_event():
    chain("evented", ("a", task("demo.noop")), ("b", task("demo.noop")))
    run = drain(start_run("evented")[0])
    kinds = list(Event.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds == [
        EventKind.RUN_STARTED, EventKind.STEP_SCHEDULED, EventKind.STEP_CLAIMED, EventKind.STEP_SUCCEEDED,
        EventKind.STEP_SCHEDULED, EventKind.STEP_CLAIMED, EventKind.STEP_SUCCEEDED, EventKind.RUN_SUCCEEDED,
    ]


def test_a_second_delivery_of_the_same_job_does_nothing():
    chain("twice", ("a", task("test.counted_sleep")))
    run, _ = start_run("twice")
    attempt_id = run.attempts.get().pk
    run_attempt(attempt_id)
    run_attempt(attempt_id)
    assert sink.requests(f"exec-{run.pk}-a") == 1
    assert StepAttempt.objects.filter(run=run).count() == 1


def test_claim_is_compare_and_set():
    chain("cas", ("a", task("demo.noop")))
    run, _ = start_run("cas")
    attempt_id = run.attempts.get().pk
    assert claim_attempt(attempt_id, "w1") is not None
    assert claim_attempt(attempt_id, "w2") is None


def test_a_fenced_worker_cannot_commit_its_result():
    chain("fenced", ("a", task("demo.noop")), ("b", task("demo.noop")))
    run, _ = start_run("fenced")
    claim = claim_attempt(run.attempts.get().pk, "sleepy")
    StepAttempt.objects.filter(pk=claim.attempt.pk).update(claim_token=None)  # taken over meanwhile
    assert complete_attempt(claim, {"late": True}, Usage()) is None
    assert Event.objects.filter(run=run, kind=EventKind.RESULT_DISCARDED).count() == 1
    assert not run.attempts.filter(state_name="b").exists()


def test_repeated_idempotency_key_returns_the_same_run():
    chain("keyed", ("a", task("demo.noop")))
    first, created = start_run("keyed", {"n": 1}, idempotency_key="order-42")
    again, created_again = start_run("keyed", {"n": 2}, idempotency_key="order-42")
    assert created and not created_again and again.pk == first.pk
    assert Run.objects.count() == 1


def test_input_path_and_result_path_shape_the_context():
    chain("paths", ("a", task("demo.validate_order", input_path="input.order", result_path="checked")),
          ("b", task("demo.noop")))
    run = drain(start_run("paths", {"order": {"order_id": "X", "items": [{"sku": "S", "qty": 1, "price": 3}]}})[0])
    assert run.context["checked"]["total"] == 3.0
    assert "a" not in run.context


def test_step_budget_stops_a_looping_run():
    doc = {"name": "looper", "start_at": "work", "budgets": {"max_steps": 6}, "states": {
        "work": {"type": "task", "handler": "demo.noop", "next": "again"},
        "again": {"type": "choice", "choices": [{"condition": {"path": "work.ok", "op": "eq", "value": True},
                                                  "next": "work"}], "default": "done"},
        "done": {"type": "succeed"}}}
    from orchestrator.engine.workflows import publish

    publish(doc)
    run = drain(start_run("looper")[0])
    assert run.status == RunStatus.FAILED
    assert run.failure_mode == FailureMode.COST_EXPLOSION
    assert run.steps_used == 6
    assert Event.objects.filter(run=run, kind=EventKind.BUDGET_EXCEEDED).exists()


def test_token_budget_is_enforced_after_the_step_that_breaks_it():
    chain("spender", ("think", task("test.usage", args={"tokens": 900, "cost": 0.5})),
          ("more", task("test.usage", args={"tokens": 900})), budgets={"max_tokens": 1000})
    run = drain(start_run("spender")[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert run.tokens_used == 1800 and float(run.cost_used) == 0.5


def test_output_that_is_not_json_fails_the_step_clearly():
    chain("opaque", ("a", task("test.not_json")))
    run = drain(start_run("opaque")[0])
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "NotSerializable"


def test_a_handler_missing_at_run_time_fails_with_a_clear_error():
    workflow = Workflow.objects.create(name="ghost")
    WorkflowVersion(workflow=workflow, number=1, definition={
        "start_at": "a", "states": {"a": {"type": "task", "handler": "gone.away", "end": True}}}).save()
    run = drain(start_run("ghost")[0])
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "HandlerNotFound" and "gone.away" in run.error["message"]


def test_wait_reads_its_duration_from_the_context():
    doc = {"name": "waiter", "start_at": "pause", "states": {
        "pause": {"type": "wait", "seconds_path": "input.delay", "next": "a"},
        "a": {"type": "task", "handler": "demo.noop", "end": True}}}
    from orchestrator.engine.workflows import publish

    publish(doc)
    run, _ = start_run("waiter", {"delay": 0.5})
    pause = run.attempts.get()
    assert (pause.not_before - pause.scheduled_at).total_seconds() == pytest.approx(0.5, abs=0.01)
    assert claim_attempt(pause.pk, "early") is None  # not due yet
    assert drain(run).status == RunStatus.SUCCEEDED


def test_finished_runs_cannot_be_cancelled_and_only_failed_ones_redriven():
    chain("done_already", ("a", task("demo.noop")))
    run = drain(start_run("done_already")[0])
    with pytest.raises(InvalidTransition, match="cannot be cancelled"):
        cancel_run(run.pk)
    with pytest.raises(InvalidTransition, match="only failed runs"):
        redrive_run(run.pk)


def pause_on_uncertain_effect() -> tuple[Run, Effect]:
    """A run whose payment effect was started by an attempt that died before confirming."""
    chain("pay", ("pay", task("test.effect_with_pause")), ("after", task("demo.noop")))
    run, _ = start_run("pay")
    claim = claim_attempt(run.attempts.get().pk, "doomed")
    Effect.objects.create(run=run, key="payment", scope=step_scope(claim.attempt), state_name="pay",
                          sequence=claim.attempt.sequence, attempt=claim.attempt, executions=1,
                          intent_at=timezone.now())
    StepAttempt.objects.filter(pk=claim.attempt.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert recover_lost(claim.attempt.pk)
    run = drain(run)
    assert run.status == RunStatus.PAUSED
    return run, Effect.objects.get(run=run)


def test_operator_may_approve_retrying_an_uncertain_effect():
    run, effect = pause_on_uncertain_effect()
    assert effect.status == EffectStatus.UNCERTAIN
    decide_effect(effect.pk, "retry")
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED
    effect.refresh_from_db()
    assert effect.status == EffectStatus.CONFIRMED and effect.executions == 2
    assert Event.objects.filter(run=run, kind=EventKind.EFFECT_DECIDED, data__decision="retry").exists()


def test_operator_may_compensate_an_uncertain_effect_which_fails_the_run():
    run, effect = pause_on_uncertain_effect()
    decide_effect(effect.pk, "compensate")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED  # no compensation function registered for this effect
    assert run.failure_mode == FailureMode.DUPLICATE_SIDE_EFFECT


def test_deciding_twice_is_refused():
    run, effect = pause_on_uncertain_effect()
    decide_effect(effect.pk, "happened")
    with pytest.raises(InvalidTransition):
        decide_effect(effect.pk, "retry")
    with pytest.raises(ValueError, match="decision must be one of"):
        decide_effect(effect.pk, "maybe")


def test_a_run_past_its_deadline_fails_as_timeout():
    chain("deadline", ("a", task("demo.noop")), timeout_seconds=60)
    run, _ = start_run("deadline")
    assert run.deadline_at is not None
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert sweep().runs_timed_out == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.TIMEOUT
    assert run.attempts.get().status == AttemptStatus.CANCELLED


def test_an_effect_refused_downstream_is_run_again_on_retry():
    chain("flaky_effect", ("pay", task("test.effect_fails_first", retry=[{"max_attempts": 2,
                                                                         "interval_seconds": 0}])))
    run = drain(start_run("flaky_effect")[0])
    assert run.status == RunStatus.SUCCEEDED
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.CONFIRMED and effect.executions == 2
    assert sink.deliveries(effect.idempotency_key) == 1
    failed = Event.objects.get(run=run, kind=EventKind.EFFECT_FAILED)
    assert failed.data["error"]["type"] == "EffectNotDone" and failed.data["outcome"] == "not done"


def test_an_effect_with_a_non_json_result_is_confirmed_then_fails_the_step():
    chain("odd_effect", ("odd", task("test.effect_not_json")))
    run = drain(start_run("odd_effect")[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "NotSerializable"
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.CONFIRMED  # it happened: never to be repeated
    assert "not_json" in effect.result
