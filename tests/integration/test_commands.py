"""Operator commands: start_run and run_workers, as an operator would use them."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from orchestrator.models import Run, RunStatus
from orchestrator.processes import MANAGE

from ..workflows import ORDER, finished

pytestmark = [pytest.mark.engine]


def start(*args: str) -> str:
    out = io.StringIO()
    call_command("start_run", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_start_run_with_a_repeated_idempotency_key_returns_the_same_run(demo):
    first = start("follow_up", "--input", '{"customer": "c"}', "--idempotency-key", "k-1")
    again = start("follow_up", "--input", '{"customer": "c"}', "--idempotency-key", "k-1")
    assert first.startswith("started run ") and again.startswith("existing run ")
    assert first.split()[2] == again.split()[2]
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_start_run_starts_many_runs_at_once_to_drive_a_demo(demo):
    out = start("partner_lookup", "--input", '{"order_id": "A-1"}', "--count", "3")
    assert out.count("started run") == 3
    assert Run.objects.filter(workflow__name="partner_lookup").count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["follow_up", "--input", "{not json"], "--input is not valid JSON"),
    (["no_such_flow"], "no workflow named 'no_such_flow'"),
    (["follow_up", "--count", "0"], "--count must be at least 1"),
])
def test_start_run_refuses_bad_input_clearly(demo, args, message):
    with pytest.raises(CommandError, match=message):
        start(*args)


@pytest.mark.integration
def test_run_workers_runs_and_stops_its_worker_processes(demo, worker_env):
    from orchestrator.engine.runs import start_run

    supervisor = subprocess.Popen([sys.executable, MANAGE, "run_workers", "--workers", "2"],
                                  env={**os.environ, **worker_env}, stdout=subprocess.PIPE, text=True)
    try:
        run = finished(start_run("order_fulfilment", ORDER)[0])
        assert run.status == RunStatus.SUCCEEDED
        children = subprocess.run(["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
