"""Bulkheads: run_workers --pools gives each queue its own workers, so steps on a slow queue
cannot hold up the default queue's: quick runs finish while slow ones still run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.models import RunStatus, WorkerBeat
from orchestrator.processes import MANAGE

from ..conftest import wait_for
from ..workflows import chain, finished, task

pytestmark = [pytest.mark.integration]


def test_a_slow_queue_does_not_delay_another(worker_env, sink_path):
    chain("slow_work", ("crunch", task("test.counted_sleep", args={"seconds": 4}, queue="slow")))
    chain("quick_work", ("answer", task("demo.noop")))
    supervisor = subprocess.Popen([sys.executable, MANAGE, "run_workers", "--pools", "default=1", "slow=1"],
                                  env={**os.environ, **worker_env}, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sorted(tuple(q) for q in WorkerBeat.objects.values_list("queues", flat=True))
                 == [("default",), ("slow",)], 30, what="one worker per pool, each on its own queue")
        slow = [start_run("slow_work", {"n": i})[0] for i in range(3)]
        quick = [start_run("quick_work", {"n": i})[0] for i in range(3)]
        done = [finished(run, timeout=10) for run in quick]
        assert {run.status for run in done} == {RunStatus.SUCCEEDED}
        # the slow pool's one worker is still on its first 4-second step: the quick runs did not wait
        still = [run.pk for run in slow if not finished_by(run, max(r.finished_at for r in done))]
        assert len(still) == 3
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    assert "workers: 1 on default; 1 on slow" in supervisor.stdout.read()


def finished_by(run, moment) -> bool:
    run.refresh_from_db()
    return run.finished_at is not None and run.finished_at <= moment


def test_bad_pools_are_refused_with_what_to_write(worker_env):
    result = subprocess.run([sys.executable, MANAGE, "run_workers", "--pools", "default"],
                            env={**os.environ, **worker_env}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "write QUEUE=N" in result.stderr
