"""The durability contract (DESIGN.md section 4) under real failures: SIGKILLed workers,
a flushed Redis, a crash inside a side effect, concurrent recovery, a dropped connection."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from orchestrator.demo import sink
from orchestrator.engine.runs import decide_effect, start_run
from orchestrator.engine.sweeper import sweep
from orchestrator.models import AttemptStatus, Effect, EffectStatus, Event, EventKind, RunStatus, StepAttempt
from orchestrator.processes import MANAGE

from ..conftest import wait_for
from ..workflows import chain, finished, reaches, task

pytestmark = [pytest.mark.engine, pytest.mark.integration]


def running_attempt(run, state_name: str) -> StepAttempt:
    return wait_for(
        lambda: run.attempts.filter(state_name=state_name, status=AttemptStatus.RUNNING).first(),
        what=f"{state_name} to be running",
    )


def test_runs_survive_a_redis_flush_before_any_worker_starts(transactional_db, workers, redis_conn, sink_path):
    chain("flushable", ("one", task("test.counted_sleep")), ("two", task("test.counted_sleep")))
    runs = [start_run("flushable")[0] for _ in range(5)]
    assert redis_conn.dbsize() > 0
    redis_conn.flushdb()  # every dispatched job is gone
    workers(2)
    for run in runs:
        run = finished(run, timeout=40)
        assert run.status == RunStatus.SUCCEEDED, (run.error, list(run.events.values_list("kind", "data")))
        assert sink.requests(f"exec-{run.pk}-one", sink_path) == 1
    assert Event.objects.filter(kind=EventKind.STEP_DISPATCHED).count() >= 5


def test_sigkilled_worker_mid_step_resumes_from_the_last_checkpoint(transactional_db, workers, sink_path):
    chain("killable", ("before", task("test.counted_sleep")),
          ("slow", task("test.counted_sleep", args={"seconds": 3})),
          ("after", task("test.counted_sleep")))
    pool = workers(1)
    run, _ = start_run("killable")
    lost = running_attempt(run, "slow")
    pool.kill(pool.processes[0])
    workers(1)
    run = finished(run, timeout=40)
    assert run.status == RunStatus.SUCCEEDED
    assert run.resume_count == 1
    slow = list(run.attempts.filter(state_name="slow").order_by("id"))
    assert [a.status for a in slow] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert slow[1].resumed_from_id == lost.pk
    assert sink.requests(f"exec-{run.pk}-before", sink_path) == 1  # the checkpoint was kept
    assert sink.requests(f"exec-{run.pk}-after", sink_path) == 1
    assert Event.objects.filter(run=run, kind=EventKind.STEP_LOST).count() == 1


def test_crash_inside_an_effect_pauses_the_run_until_an_operator_decides(transactional_db, workers, sink_path):
    chain("uncertain", ("pay", task("test.effect_with_pause", args={"inside_seconds": 3})),
          ("after", task("test.counted_sleep")))
    pool = workers(1)
    run, _ = start_run("uncertain")
    wait_for(lambda: sink.stats(sink_path)["delivered"] == 1, what="the payment to be delivered")
    pool.kill(pool.processes[0])  # after the delivery, before the ledger confirms it
    workers(1)
    run = reaches(run, RunStatus.PAUSED, timeout=40)
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.UNCERTAIN
    assert sink.deliveries(effect.idempotency_key, sink_path) == 1  # not silently done again

    decide_effect(effect.pk, "happened", result={"delivery": 1})
    run = finished(run, timeout=30)
    assert run.status == RunStatus.SUCCEEDED
    assert sink.deliveries(effect.idempotency_key, sink_path) == 1
    effect.refresh_from_db()
    assert effect.status == EffectStatus.CONFIRMED and effect.dedup_hits == 1
    assert run.human_wait_seconds > 0


def test_crash_inside_an_idempotent_effect_retries_it_safely(transactional_db, workers, sink_path):
    chain("retryable", ("pay", task("test.effect_with_pause", args={"inside_seconds": 3, "idempotent": True})))
    pool = workers(1)
    run, _ = start_run("retryable")
    wait_for(lambda: sink.stats(sink_path)["delivered"] == 1, what="the payment to be delivered")
    pool.kill(pool.processes[0])
    workers(1)
    run = finished(run, timeout=40)
    assert run.status == RunStatus.SUCCEEDED
    effect = Effect.objects.get(run=run)
    assert effect.executions == 2  # the ledger saw the function called twice...
    stats = sink.stats(sink_path)
    assert stats["duplicate_keys"] == 0 and stats["replays"] == 1  # ...and downstream deduplicated
    assert Event.objects.filter(run=run, kind=EventKind.EFFECT_RETRIED).count() == 1


def test_confirmed_effect_is_not_run_again_when_its_step_resumes(transactional_db, workers, sink_path):
    chain("confirmed", ("pay", task("test.effect_with_pause", args={"after_seconds": 3})))
    pool = workers(1)
    run, _ = start_run("confirmed")
    wait_for(lambda: Effect.objects.filter(run=run, status=EffectStatus.CONFIRMED).exists(),
             what="the effect to be confirmed")
    pool.kill(pool.processes[0])
    workers(1)
    run = finished(run, timeout=40)
    assert run.status == RunStatus.SUCCEEDED
    effect = Effect.objects.get(run=run)
    assert effect.executions == 1 and effect.dedup_hits == 1
    assert sink.requests(effect.idempotency_key, sink_path) == 1


def expire_leases(count: int) -> list[int]:
    """Make ``count`` running attempts whose worker vanished (lease long expired)."""
    chain("orphans", ("work", task("test.counted_sleep")))
    past = timezone.now() - timedelta(minutes=5)
    ids = []
    for _ in range(count):
        run, _ = start_run("orphans")
        attempt = run.attempts.get()
        StepAttempt.objects.filter(pk=attempt.pk).update(
            status=AttemptStatus.RUNNING, claimed_at=past, lease_expires_at=past, worker="ghost"
        )
        ids.append(attempt.pk)
    return ids


def test_recovery_on_two_workers_at_once_resumes_each_attempt_once(transactional_db, worker_env, workers, sink_path):
    lost_ids = expire_leases(20)
    env = {**worker_env}
    sweepers = [subprocess.Popen([sys.executable, MANAGE, "sweep"], env={**__import__("os").environ, **env},
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in sweepers]
    assert all(p.returncode == 0 for p in sweepers), outputs
    resumed = sum(int(out.split("resumed=")[1].split()[0]) for out in outputs)
    assert resumed == 20
    for attempt_id in lost_ids:
        attempt = StepAttempt.objects.get(pk=attempt_id)
        assert attempt.status == AttemptStatus.LOST
        assert StepAttempt.objects.filter(resumed_from_id=attempt_id).count() == 1
    assert Event.objects.filter(kind=EventKind.STEP_RESUMED).count() == 20
    workers(2)
    for attempt_id in lost_ids:
        run = finished(StepAttempt.objects.get(pk=attempt_id).run, timeout=40)
        assert run.status == RunStatus.SUCCEEDED, (run.error, list(run.events.values_list("kind", "data")))
        assert sink.requests(f"exec-{run.pk}-work", sink_path) == 1  # no attempt ran twice


def test_concurrent_sweeps_in_threads_never_double_resume(transactional_db, redis_conn, fast_engine):
    if connection.vendor == "sqlite":
        pytest.skip("threads sharing one SQLite file serialise anyway; the process test covers it")
    lost_ids = expire_leases(10)
    barrier = threading.Barrier(4)

    def sweep_once() -> None:
        barrier.wait()
        try:
            sweep()
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for attempt_id in lost_ids:
        assert StepAttempt.objects.filter(resumed_from_id=attempt_id).count() == 1


def test_worker_reconnects_after_its_database_connection_is_killed(transactional_db, workers, sink_path):
    if connection.vendor != "postgresql":
        pytest.skip("terminating a server-side connection needs PostgreSQL")
    chain("reconnect", ("first", task("test.counted_sleep", args={"seconds": 1})),
          ("second", task("test.counted_sleep", args={"seconds": 1})),
          ("third", task("test.counted_sleep")))
    workers(1)
    run, _ = start_run("reconnect")
    running_attempt(run, "first")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "the worker had no connection to kill"
    run = finished(run, timeout=40)
    assert run.status == RunStatus.SUCCEEDED
    assert sink.requests(f"exec-{run.pk}-second", sink_path) == 1
