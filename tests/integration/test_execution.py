"""Runs executed by real worker processes on the configured database and a real Redis."""

from __future__ import annotations

import signal
import time

import pytest

from orchestrator.demo import sink
from orchestrator.engine.runs import cancel_run, redrive_run, start_run
from orchestrator.models import AttemptStatus, Effect, EffectStatus, Event, EventKind, FailureMode, RunStatus

from ..conftest import wait_for
from ..workflows import ORDER, chain, finished, task

pytestmark = [pytest.mark.engine, pytest.mark.integration]


def test_order_pipeline_succeeds_with_each_effect_delivered_once(demo, workers, sink_path):
    workers(2)
    run, _ = start_run("order_fulfilment", ORDER)
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert set(run.context) >= {"input", "validate", "reserve", "fraud_check", "charge", "pack", "ship", "notify"}
    effects = list(Effect.objects.filter(run=run))
    assert {e.key for e in effects} == {"charge", "shipment", "email"}
    for effect in effects:
        assert effect.status == EffectStatus.CONFIRMED
        assert effect.executions == 1
        assert sink.deliveries(effect.idempotency_key, sink_path) == 1
    assert Event.objects.filter(run=run, kind=EventKind.RUN_SUCCEEDED).count() == 1


def test_flaky_step_is_retried_until_it_succeeds(demo, workers):
    workers(1)
    # digest("T-1") % 3 decides how many tries fail; find an order that fails twice.
    from orchestrator.demo.handlers import _order_digest

    order_id = next(f"R-{i}" for i in range(100) if _order_digest(f"R-{i}") % 3 == 2)
    run, _ = start_run("order_fulfilment", {**ORDER, "order_id": order_id})
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED
    tries = list(run.attempts.filter(state_name="reserve").order_by("attempt"))
    assert [a.status for a in tries] == [AttemptStatus.FAILED, AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert tries[0].error["type"] == "TransientInventoryError"
    assert Event.objects.filter(run=run, kind=EventKind.STEP_RETRIED).count() == 2


def test_invalid_order_takes_the_choice_default_to_a_fail_state(demo, workers):
    workers(1)
    run, _ = start_run("order_fulfilment", {"order_id": "BAD", "items": []})
    run = finished(run)
    assert run.status == RunStatus.FAILED
    assert run.failure_mode == FailureMode.REJECTED
    assert run.error["type"] == "InvalidOrder"
    assert Event.objects.filter(run=run, kind=EventKind.CHOICE_TAKEN, data__rule="default").exists()


def test_caught_error_continues_on_the_catch_path(demo, workers):
    workers(1)
    run, _ = start_run("follow_up", {"customer": "bob"})
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["partner_call"]["error"]["type"] == "RuntimeError"
    assert run.attempts.filter(state_name="partner_call", status=AttemptStatus.FAILED).count() == 2
    wait = run.attempts.get(state_name="cool_off")
    assert (wait.claimed_at - wait.scheduled_at).total_seconds() >= 1.9
    assert Event.objects.filter(run=run, kind=EventKind.STEP_CAUGHT).count() == 1


def test_step_past_its_timeout_fails_the_run_as_timeout(transactional_db, workers):
    chain("slowpoke", ("nap", task("test.counted_sleep", args={"seconds": 5}, timeout_seconds=1)))
    workers(1)
    run, _ = start_run("slowpoke")
    run = finished(run, timeout=20)
    assert run.status == RunStatus.FAILED
    assert run.failure_mode == FailureMode.TIMEOUT
    attempt = run.attempts.get()
    assert attempt.status == AttemptStatus.TIMED_OUT
    assert attempt.error["type"] == "Timeout"


def test_cancel_stops_a_run_and_nothing_after_it_runs(transactional_db, workers):
    chain("cancellable", ("long", task("test.counted_sleep", args={"seconds": 2})),
          ("after", task("test.counted_sleep")))
    workers(1)
    run, _ = start_run("cancellable")
    wait_for(lambda: run.attempts.filter(status=AttemptStatus.RUNNING).exists(), what="the step to start")
    cancel_run(run.pk, reason="test")
    time.sleep(3)  # past the end of the step the worker was running
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert not run.attempts.filter(state_name="after").exists()
    assert run.attempts.get(state_name="long").status == AttemptStatus.CANCELLED


def test_redrive_restarts_a_failed_run_from_its_failed_step(transactional_db, workers, tmp_path, sink_path):
    flag = tmp_path / "flag"
    chain("redrivable", ("first", task("test.counted_sleep")),
          ("gate", task("test.fail_until_flag")), ("last", task("test.counted_sleep")))
    workers(1)
    run, _ = start_run("redrivable", {"flag": str(flag)})
    run = finished(run)
    assert run.status == RunStatus.FAILED
    flag.touch()
    redrive_run(run.pk)
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.redrive_count == 1
    # The completed checkpoint before the failure was kept, not re-run.
    assert sink.requests(f"exec-{run.pk}-first", sink_path) == 1
    assert sink.requests(f"exec-{run.pk}-gate", sink_path) == 2
    assert sink.requests(f"exec-{run.pk}-last", sink_path) == 1


def test_failed_run_compensates_confirmed_effects_in_reverse_order(transactional_db, workers, sink_path):
    chain("saga", ("charge_a", task("test.charge_with_compensation", args={"key": "a"})),
          ("charge_b", task("test.charge_with_compensation", args={"key": "b"})),
          ("explode", task("test.fail")))
    workers(1)
    run, _ = start_run("saga")
    run = finished(run)
    assert run.status == RunStatus.FAILED
    effects = {e.key: e for e in Effect.objects.filter(run=run)}
    assert {k: e.status for k, e in effects.items()} == {"a": EffectStatus.COMPENSATED, "b": EffectStatus.COMPENSATED}
    assert effects["b"].compensated_at < effects["a"].compensated_at
    for effect in effects.values():
        assert sink.deliveries(f"{effect.idempotency_key}-undo", sink_path) == 1
    kinds = list(Event.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds.index(EventKind.COMPENSATION_STARTED) < kinds.index(EventKind.RUN_FAILED)


def test_a_step_that_heartbeats_may_run_longer_than_its_heartbeat_interval(transactional_db, workers):
    chain("beating", ("work", task("test.counted_sleep", args={"seconds": 3, "heartbeat": True},
                                   heartbeat_seconds=1, timeout_seconds=30)))
    workers(1)
    run = finished(start_run("beating")[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.attempts.get().progress is not None


def test_a_step_that_stops_heartbeating_times_out(transactional_db, workers):
    chain("silent", ("work", task("test.counted_sleep", args={"seconds": 6}, heartbeat_seconds=1,
                                  timeout_seconds=30)))
    workers(1)
    run = finished(start_run("silent")[0], timeout=20)
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.TIMEOUT
    assert run.attempts.get().status == AttemptStatus.TIMED_OUT


def test_a_worker_asked_to_stop_finishes_its_step_and_hands_on_the_rest(transactional_db, workers, sink_path):
    chain("handover", ("one", task("test.counted_sleep", args={"seconds": 1.5})),
          ("two", task("test.counted_sleep")), ("three", task("test.counted_sleep")))
    pool = workers(1)
    run, _ = start_run("handover")
    wait_for(lambda: run.attempts.filter(state_name="one", status=AttemptStatus.RUNNING).exists(),
             what="the first step to start")
    worker = pool.processes[0]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert run.attempts.get(state_name="one").status == AttemptStatus.SUCCEEDED
    assert run.attempts.get(state_name="two").status == AttemptStatus.SCHEDULED  # handed to RQ
    workers(1)
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED and run.resume_count == 0
    for state in ("one", "two", "three"):
        assert sink.requests(f"exec-{run.pk}-{state}", sink_path) == 1
