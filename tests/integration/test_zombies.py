"""Workers that come back from the dead, from outside: SIGSTOPped past their lease and woken
(zombies), a step that kills its worker every time (poison), and a worker whose clock is
30 seconds off (libfaketime). Counts are taken at the sink, outside the engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection

from orchestrator.demo import sink
from orchestrator.engine.runs import decide_effect, start_run
from orchestrator.models import AttemptStatus, Effect, EffectStatus, Event, EventKind, FailureMode, RunStatus

from ..conftest import wait_for
from ..workflows import chain, finished, reaches, task

pytestmark = [pytest.mark.engine, pytest.mark.integration]


def running_on(run, state_name: str):
    return wait_for(lambda: run.attempts.filter(state_name=state_name, status=AttemptStatus.RUNNING).first(),
                    what=f"{state_name} to be running")


def test_a_zombie_worker_that_finishes_a_resumed_step_has_its_result_discarded(workers, sink_path):
    chain("zombie_step", ("slow", task("test.counted_sleep", args={"seconds": 3})),
          ("after", task("test.counted_sleep")))
    first = workers(1)
    run, _ = start_run("zombie_step")
    running_on(run, "slow")
    # Freeze it mid-sleep, not while it writes to the sink: frozen there, it would hold the
    # sink's file lock and fail the resumed step's own write (the outside world, not the engine).
    wait_for(lambda: sink.requests(f"exec-{run.pk}-slow", sink_path) == 1, what="the slow step to start sleeping")
    first.freeze(first.processes[0])
    workers(1)
    run = finished(run, timeout=40)
    assert run.status == RunStatus.SUCCEEDED and run.resume_count == 1, (
        run.error and run.error.get("message"), run.error and run.error.get("traceback"),
        list(run.events.order_by("id").values_list("kind", "state_name")))
    first.thaw(first.processes[0])  # it wakes up and finishes the step it lost long ago
    wait_for(lambda: Event.objects.filter(run=run, kind=EventKind.RESULT_DISCARDED).exists(),
             what="the zombie's late result to be discarded")
    slow = list(run.attempts.filter(state_name="slow").order_by("id"))
    assert [a.status for a in slow] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert sink.requests(f"exec-{run.pk}-after", sink_path) == 1  # nothing ran twice after it


def test_a_zombie_inside_an_effect_cannot_confirm_it_while_the_operator_decides(workers, sink_path):
    """The issue's reproduction with real processes: frozen after the payment reached the sink,
    before the ledger heard of it; the run pauses as uncertain; the zombie wakes and reports.
    The ledger keeps the decision for the operator, and the operator's decision is accepted."""
    # The worker must be frozen inside the effect, between the delivery and its confirmation:
    # the window is wide enough for a machine that stalls a few seconds, and checked.
    chain("zombie_effect", ("pay", task("test.effect_with_pause", args={"inside_seconds": 6})),
          ("after", task("test.counted_sleep")))
    first = workers(1)
    run, _ = start_run("zombie_effect")
    wait_for(lambda: sink.stats(sink_path)["delivered"] == 1, what="the payment to reach the sink")
    first.freeze(first.processes[0])
    assert Effect.objects.get(run=run).status == EffectStatus.INTENT, "frozen too late: the effect was confirmed"
    workers(1)
    run = reaches(run, RunStatus.PAUSED, timeout=40)
    first.thaw(first.processes[0])
    wait_for(lambda: Event.objects.filter(run=run, kind=EventKind.EFFECT_LATE_RESULT).exists(),
             what="the zombie's late effect result")
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.UNCERTAIN  # not confirmed behind the operator's back
    decide_effect(effect.pk, "happened", result=sink.lookup(effect.idempotency_key))
    run = finished(run, timeout=30)
    assert run.status == RunStatus.SUCCEEDED
    assert sink.deliveries(effect.idempotency_key, sink_path) == 1
    effect.refresh_from_db()
    assert effect.duplicates == 0


def test_a_step_that_kills_its_worker_every_time_fails_as_lost_progress(worker_env, workers, sink_path):
    worker_env["RATCHET_MAX_RESUMES_PER_STEP"] = "2"
    chain("poison", ("deadly", task("test.kills_its_worker", retry=[{"errors": ["*"], "max_attempts": 50}])))
    pool = workers(2)
    run, _ = start_run("poison")

    def settled():
        pool.replace_dead()  # what run_workers and make run do
        fresh = run.__class__.objects.get(pk=run.pk)
        return fresh if fresh.status in (RunStatus.FAILED, RunStatus.SUCCEEDED) else None

    run = wait_for(settled, timeout=60, interval=0.2, what="the poison run to give up")
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.LOST_PROGRESS
    assert sink.requests(f"exec-{run.pk}-deadly", sink_path) == 3  # the first try and two resumes
    assert run.attempts.filter(status=AttemptStatus.LOST).count() == 3
    assert run.error["type"] == "Lost" and run.error["code"] == "R520"


SKEWED_CLOCK = str(Path(__file__).resolve().parent.parent / "skewed_clock")


@pytest.mark.parametrize("skew", [-30, 30])
def test_a_worker_whose_clock_is_30_seconds_off_neither_loses_nor_keeps_attempts_wrongly(
        skew, worker_env, workers, sink_path):
    """Behind: the skewed worker runs the step (its leases would look expired to the others).
    Ahead: the skewed worker sweeps (everyone's leases would look expired to it)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server clock: every process reads this machine's")
    skewed_env = {"PYTHONPATH": os.pathsep.join(filter(None, [SKEWED_CLOCK, os.environ.get("PYTHONPATH")])),
                  "RATCHET_TEST_CLOCK_SKEW": str(skew)}
    chain("skewed", ("slow", task("test.counted_sleep", args={"seconds": 4})), ("after", task("test.counted_sleep")))
    if skew < 0:
        workers(1, extra_env=skewed_env)
        run, _ = start_run("skewed")
        running_on(run, "slow")
        workers(1)
    else:
        workers(1)
        run, _ = start_run("skewed")
        running_on(run, "slow")
        workers(1, extra_env=skewed_env)
    run = finished(run, timeout=40)
    assert run.status == RunStatus.SUCCEEDED
    assert run.resume_count == 0
    assert sink.requests(f"exec-{run.pk}-slow", sink_path) == 1
