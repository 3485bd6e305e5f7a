"""Parallel branches on real worker processes: branches run at the same time on different
workers, and a worker SIGKILLed in the middle of a fan-out loses no branch and the join fires
exactly once."""

from __future__ import annotations

import pytest

from orchestrator.demo import sink
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Event, EventKind, RunStatus

from ..conftest import wait_for
from ..workflows import finished

pytestmark = [pytest.mark.engine, pytest.mark.integration]


def publish_fan_out(name: str, branches: int, seconds: float) -> list[str]:
    names = [f"work_{i}" for i in range(branches)]
    publish({"name": name, "start_at": "fan", "states": {
        "fan": {"type": "parallel", "next": "after", "branches": {
            f"b{i}": {"start_at": step, "states": {step: {"type": "task", "handler": "test.counted_sleep",
                                                          "args": {"seconds": seconds}, "end": True}}}
            for i, step in enumerate(names)}},
        "after": {"type": "task", "handler": "test.counted_sleep", "end": True}}})
    return names


def test_branches_run_at_the_same_time_on_different_workers(workers, sink_path):
    steps = publish_fan_out("wide", 2, 1.5)
    workers(2)
    run = finished(start_run("wide")[0])
    assert run.status == RunStatus.SUCCEEDED
    a, b = (run.attempts.get(state_name=s) for s in steps)
    assert a.worker != b.worker
    assert a.claimed_at < b.finished_at and b.claimed_at < a.finished_at  # they overlapped


def test_a_worker_killed_mid_fan_out_loses_no_branch_and_the_join_fires_once(workers, sink_path):
    steps = publish_fan_out("killed_fan", 3, 2)
    pool = workers(2)
    run, _ = start_run("killed_fan")
    wait_for(lambda: run.attempts.filter(status=AttemptStatus.RUNNING).count() == 2, what="two branches running")
    pool.kill(pool.processes[0])
    workers(1)
    run = finished(run, timeout=60)
    assert run.status == RunStatus.SUCCEEDED and run.resume_count >= 1
    assert set(run.context["fan"]) == {"b0", "b1", "b2"}
    for step in steps:
        assert run.attempts.filter(state_name=step, status=AttemptStatus.SUCCEEDED).count() == 1
        assert sink.requests(f"exec-{run.pk}-{step}", sink_path) <= 2  # at most the lost try and its resume
    assert Event.objects.filter(run=run, kind=EventKind.JOINED).count() == 1
    assert sink.requests(f"exec-{run.pk}-after", sink_path) == 1


def test_a_map_over_real_workers_survives_a_killed_worker(workers, sink_path):
    publish({"name": "mapped", "start_at": "each", "budgets": {"max_steps": 200}, "states": {
        "each": {"type": "map", "items_path": "input.items", "max_concurrency": 4, "end": True, "iterator": {
            "start_at": "nap", "states": {"nap": {"type": "task", "handler": "test.counted_sleep",
                                                  "args": {"seconds": 0.3}, "end": True}}}}}})
    pool = workers(2)
    run, _ = start_run("mapped", {"items": list(range(12))})
    wait_for(lambda: run.attempts.filter(status=AttemptStatus.SUCCEEDED).count() >= 3, what="a few items done")
    pool.kill(pool.processes[0])
    workers(1)
    run = finished(run, timeout=60)
    assert run.status == RunStatus.SUCCEEDED
    assert len(run.output) == 12 and run.context["each"] == run.output
    assert run.attempts.filter(state_name="nap", status=AttemptStatus.SUCCEEDED).count() == 12
    assert Event.objects.filter(run=run, kind=EventKind.JOINED).count() == 1
