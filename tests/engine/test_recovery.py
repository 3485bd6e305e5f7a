"""Ways out of every stuck state, in-process: budgets on failure, redrive of the right visit,
a failed compensation decided by an operator, deadlines whatever the run waits on, jobs
Redis lost between pop and start, unserved queues, checkpoints the database refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from orchestrator.demo import sink
from orchestrator.engine import clock
from orchestrator.engine.dispatch import job_id, queue
from orchestrator.engine.errors import InvalidTransition
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.runs import decide_effect, redrive_run, start_run
from orchestrator.engine.sweeper import sweep
from orchestrator.engine.transitions import claim_attempt
from orchestrator.engine.workers import beat
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    AttemptKind,
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    FailureMode,
    PauseReason,
    Run,
    RunStatus,
    StepAttempt,
)

from ..workflows import chain, task
from .test_ledger import lose_lease
from .test_transitions import drain, pause_on_uncertain_effect

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]
NO_WAIT = [{"max_attempts": 10, "interval_seconds": 0}]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine, settings):
    settings.RATCHET = {**settings.RATCHET, "COMPENSATION_MAX_ATTEMPTS": 1}


def settle(run: Run, rounds: int = 5) -> Run:
    """Drain, sweeping between rounds (timers and recovery are the sweeper's)."""
    for _ in range(rounds):
        run = drain(run)
        if run.status != RunStatus.RUNNING:
            return run
        sweep()
    return run


# --- budgets ----------------------------------------------------------------------------------------


def test_a_failing_step_that_spends_breaks_its_budget_before_any_retry():
    chain("burner", ("think", task("test.spend_and_fail", args={"tokens": 400}, retry=NO_WAIT)),
          budgets={"max_tokens": 1000})
    run = drain(start_run("burner")[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert run.tokens_used == 1200  # the third try broke it; no fourth was scheduled
    assert run.attempts.count() == 3
    with pytest.raises(InvalidTransition, match="budget"):
        redrive_run(run.pk)


# --- redrive ----------------------------------------------------------------------------------------


def test_redrive_restarts_the_failed_visit_as_a_new_attempt_of_it(tmp_path):
    flag = tmp_path / "flag"
    chain("redrive_visit", ("pay", task("test.effect_fails_first", retry=[{"max_attempts": 2,
                                                                           "interval_seconds": 0}])),
          ("gate", task("test.fail_until_flag")))
    run = drain(start_run("redrive_visit", {"flag": str(flag)})[0])
    assert run.status == RunStatus.FAILED
    gate = run.attempts.get(state_name="gate")
    assert run.failed_attempt_id == gate.pk
    flag.touch()
    redrive_run(run.pk)
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED
    again = run.attempts.filter(state_name="gate").order_by("id").last()
    assert (again.sequence, again.attempt) == (gate.sequence, gate.attempt + 1)


def test_redrive_never_reruns_a_checkpointed_step_that_was_retried():
    """The issue's reproduction: the payment failed once, succeeded on retry, and later the run
    reached a fail state. The old redrive picked the payment's failed try and paid again."""
    publish({"name": "retried_then_rejected", "start_at": "pay", "states": {
        "pay": {"type": "task", "handler": "test.effect_fails_first",
                "retry": [{"max_attempts": 2, "interval_seconds": 0}], "next": "check"},
        "check": {"type": "choice", "choices": [{"condition": {"path": "pay.delivery", "op": "eq", "value": -1},
                                                 "next": "done"}], "default": "rejected"},
        "done": {"type": "succeed"},
        "rejected": {"type": "fail", "error": "Rejected"}}})
    run = drain(start_run("retried_then_rejected")[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.REJECTED
    with pytest.raises(InvalidTransition, match="without a failed step"):
        redrive_run(run.pk)
    effect = Effect.objects.get(run=run)
    assert sink.deliveries(effect.idempotency_key) == 1


# --- a failed compensation is decided by an operator ------------------------------------------------


def failed_compensation() -> tuple[Run, Effect]:
    chain("fragile_saga", ("charge", task("test.charge_with_fragile_undo", queue="slow")),
          ("explode", task("test.fail", queue="slow")))
    run = settle(start_run("fragile_saga")[0])
    assert run.status == RunStatus.PAUSED and run.pause_reason == PauseReason.COMPENSATION_FAILED
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.COMPENSATION_FAILED
    return run, effect


def test_a_compensation_runs_on_the_queue_of_the_step_that_made_the_effect():
    run, effect = failed_compensation()
    assert effect.queue == "slow"
    assert run.attempts.get(kind=AttemptKind.COMPENSATION).queue == "slow"


def test_an_operator_may_retry_a_failed_compensation():
    run, effect = failed_compensation()
    sink.deliver(f"{effect.idempotency_key}-flag", "flag", {})  # the refund service is back
    decide_effect(effect.pk, "retry")
    run = settle(run)
    assert run.status == RunStatus.FAILED
    effect.refresh_from_db()
    assert effect.status == EffectStatus.COMPENSATED and effect.decision == "retry"
    assert sink.deliveries(f"{effect.idempotency_key}-undo") == 1


@pytest.mark.parametrize(("decision", "status"), [("done", EffectStatus.COMPENSATED),
                                                  ("accept", EffectStatus.NOT_COMPENSATED)])
def test_an_operator_may_mark_a_failed_compensation_done_or_accept_it(decision, status):
    run, effect = failed_compensation()
    decide_effect(effect.pk, decision)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.human_wait_seconds > 0
    effect.refresh_from_db()
    assert effect.status == status
    assert Event.objects.filter(run=run, kind=EventKind.EFFECT_DECIDED, data__decision=decision).exists()


def test_an_uncertain_decision_is_refused_for_a_failed_compensation():
    run, effect = failed_compensation()
    with pytest.raises(InvalidTransition, match="retry, done, accept"):
        decide_effect(effect.pk, "happened")


def test_a_compensation_that_keeps_losing_its_worker_pauses_for_an_operator(settings):
    settings.RATCHET = {**settings.RATCHET, "MAX_RESUMES_PER_STEP": 1}
    chain("lost_undo", ("charge", task("test.charge_with_compensation")), ("explode", task("test.fail")))
    run, _ = start_run("lost_undo")
    run_attempt(run.attempts.get().pk)  # charged, then exploded: the saga schedules the undo
    for _ in range(2):  # the undo's worker dies twice
        undo = run.attempts.get(kind=AttemptKind.COMPENSATION, status=AttemptStatus.SCHEDULED)
        lose_lease(claim_attempt(undo.pk, "doomed"))
    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED and run.pause_reason == PauseReason.COMPENSATION_FAILED
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.COMPENSATION_FAILED and effect.error["type"] == "Lost"


# --- deadlines cover every status that is not terminal ----------------------------------------------


def expire_deadline(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(deadline_at=clock.now() - timedelta(seconds=1))


def test_a_paused_run_past_its_deadline_fails_as_timeout():
    run, effect = pause_on_uncertain_effect()
    expire_deadline(run)
    assert sweep().runs_timed_out == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.TIMEOUT


def test_a_saga_past_its_own_deadline_ends_and_marks_what_it_left():
    run, effect = failed_compensation()
    expire_deadline(run)
    assert sweep().runs_timed_out == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    effect.refresh_from_db()
    assert effect.status == EffectStatus.COMPENSATION_FAILED
    assert effect.error["type"] == "CompensationNotDone"


def test_a_run_failed_by_its_deadline_still_compensates():
    chain("late_saga", ("charge", task("test.charge_with_compensation")),
          ("nap", task("test.counted_sleep", queue="slow")), timeout_seconds=60)
    run, _ = start_run("late_saga")
    run_attempt(run.attempts.get().pk)  # charged; the nap waits on the slow queue
    expire_deadline(run)
    sweep()
    run = settle(run)
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.TIMEOUT
    assert Effect.objects.get(run=run).status == EffectStatus.COMPENSATED


# --- dispatch judged by the database ----------------------------------------------------------------


def age_dispatch(run: Run) -> StepAttempt:
    StepAttempt.objects.filter(run=run).update(dispatched_at=F("dispatched_at") - timedelta(seconds=60))
    return run.attempts.get()


def test_a_job_a_worker_popped_and_took_with_it_is_dispatched_again(redis_conn):
    """Reproduced as the issue says: the job id leaves its queue list, the job hash stays."""
    chain("popped", ("a", task("demo.noop")))
    run, _ = start_run("popped")
    attempt = age_dispatch(run)
    q = queue("default")
    assert redis_conn.lrem(q.key, 0, job_id(attempt.pk)) == 1
    assert redis_conn.hget(f"rq:job:{job_id(attempt.pk)}", "status") == b"queued"  # RQ still says queued
    assert sweep().redispatched == 1
    assert job_id(attempt.pk) in q.job_ids
    run_attempt(attempt.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_a_job_still_in_its_queue_is_not_dispatched_twice():
    chain("waiting_job", ("a", task("demo.noop")))
    run, _ = start_run("waiting_job")
    age_dispatch(run)
    assert sweep().redispatched == 0


def test_work_on_a_queue_no_live_worker_reads_is_reported_once():
    chain("stranded", ("a", task("demo.noop", queue="gpu")))
    run, _ = start_run("stranded")
    attempt = age_dispatch(run)
    beat("cpu-worker", ["default", "slow"])
    assert sweep().unserved == 1
    assert sweep().unserved == 0  # reported once, not at every sweep
    event = Event.objects.get(run=run, kind=EventKind.QUEUE_UNSERVED)
    assert event.attempt_id == attempt.pk and event.data["queue"] == "gpu"


def test_work_on_a_queue_a_live_worker_reads_is_not_reported():
    chain("served", ("a", task("demo.noop", queue="gpu")))
    run, _ = start_run("served")
    age_dispatch(run)
    beat("gpu-worker", ["gpu"])
    assert sweep().unserved == 0


# --- checkpoints the database refuses ---------------------------------------------------------------


@pytest.mark.parametrize(("kind", "says"), [("nan", "$.answer.value is nan"), ("nul", "$.answer.value holds a NUL")])
def test_output_jsonb_would_refuse_fails_the_attempt_naming_the_value(kind, says):
    chain(f"bad_{kind}", ("a", task("test.unstorable", args={"kind": kind})))
    run = drain(start_run(f"bad_{kind}")[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "NotSerializable"
    assert says in run.error["message"]
    assert run.attempts.get().status == AttemptStatus.FAILED  # at once, not after its lease


def test_a_checkpoint_the_database_refuses_fails_the_attempt_at_once():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores a lone surrogate; PostgreSQL's jsonb refuses it")
    chain("bad_surrogate", ("a", task("test.unstorable", args={"kind": "surrogate"})))
    run = drain(start_run("bad_surrogate")[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "CheckpointRefused"
    assert run.attempts.get().status == AttemptStatus.FAILED


# --- statements on the hot path ----------------------------------------------------------------------


def statements(fn) -> int:
    with CaptureQueriesContext(connection) as queries:
        fn()
    return len([q for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))])


def test_statements_per_step_are_pinned():
    """A three-step inline chain: claim, then per step a checkpoint that schedules and claims
    the next. If this number grows, the hot path grew: look before raising it.

    PostgreSQL: the claim (the read that claims the attempt with its event when nothing is to
    be checked first, claim_read.py) and three one-statement checkpoints (fast_checkpoint.py;
    no step's input needs an output, so the context is not read). SQLite:
    the general path each time, which writes one context entry per step (and reads no context
    either)."""
    chain("counted3", ("a", task("demo.noop")), ("b", task("demo.noop")), ("c", task("demo.noop")))
    run, _ = start_run("counted3")
    clock.sync()
    first = run.attempts.get().pk
    expected = {"postgresql": 4, "sqlite": 28}[connection.vendor]
    assert statements(lambda: run_attempt(first)) == expected
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_statements_per_effect_are_pinned():
    chain("counted_effect", ("pay", task("test.charge_with_compensation")))
    run, _ = start_run("counted_effect")
    clock.sync()
    first = run.attempts.get().pk
    expected = {"postgresql": 14, "sqlite": 24}[connection.vendor]  # SQLite: a context entry of its own
    assert statements(lambda: run_attempt(first)) == expected
