"""The chaos command at CI scale: real workers SIGKILLed and SIGSTOPped, Redis flushed, a
strict sink that deduplicates nothing, paused runs decided as an operator would."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from orchestrator.processes import MANAGE

pytestmark = [pytest.mark.engine, pytest.mark.integration, pytest.mark.chaos]


def figures(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def chaos(worker_env: dict[str, str], runs: int, *args: str) -> dict[str, str]:
    """Run the chaos command; check what every chaos run must show; return its last line's figures."""
    command = subprocess.Popen(
        [sys.executable, MANAGE, "chaos", "--strict", "--runs", str(runs), "--workers", "3", "--kill-every", "1.5",
         "--pause-every", "3", "--timeout", "240", *args],
        env={**os.environ, **worker_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = command.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        command.terminate()  # the command stops (and thaws) its workers, or they would hold locks
        stdout, stderr = command.communicate(timeout=30)
    print(stdout[-3000:], stderr[-3000:])
    lines = stdout.strip().splitlines()
    summary, details = figures(lines[-1]), figures(lines[-2])
    assert lines[-1].startswith(f"chaos: runs={runs} succeeded={runs} failed=0 "), lines[-1]
    assert summary["silent_duplicates"] == "0" and summary["lost_runs"] == "0", lines[-1]
    assert details["misreported"] == "0" and details["missing_effects"] == "0", lines[-2]
    assert int(details["kills"]) > 0 and int(details["freezes"]) > 0 and int(details["redis_flushes"]) > 0
    assert command.returncode == 0
    return summary


def test_strict_chaos_ends_with_every_run_succeeded_and_no_silent_duplicate(worker_env):
    chaos(worker_env, 30, "--flush-redis-every", "4", "--pack-seconds", "0.5")


def test_strict_chaos_during_fan_out_loses_no_branch_and_joins_once(worker_env):
    """The supervisor/worker demo: kills and freezes land while branches run."""
    chaos(worker_env, 30, "--workflow", "research", "--flush-redis-every", "6")
    from orchestrator.models import Event, EventKind, Run

    runs = Run.objects.filter(workflow__name="research")
    assert runs.count() == 30
    for run in runs:  # the join fired exactly once in every run
        assert Event.objects.filter(run=run, kind=EventKind.JOINED).count() == 1


def test_strict_chaos_on_agents_handing_off_refunds_once_and_replies_once(worker_env):
    """The peer-network demo: kills and freezes land between model turns and inside tools."""
    chaos(worker_env, 30, "--workflow", "support_network", "--flush-redis-every", "6", "--effect-seconds", "0.2")
    from orchestrator.models import ModelCall, Run

    runs = Run.objects.filter(workflow__name="support_network")
    assert runs.count() == 30
    for run in runs:  # every answer a run paid for was charged to it once
        assert run.tokens_used == sum(c.tokens for c in ModelCall.objects.filter(run=run))
        assert run.depth_used in (1, 2)


def test_strict_chaos_on_refunds_approved_by_a_second_person_pays_each_once(worker_env):
    """The refund demo: runs wait for approval while workers die and Redis is flushed; the
    command approves them as a second user, and every approval is applied once."""
    chaos(worker_env, 25, "--workflow", "refund", "--flush-redis-every", "4", "--effect-seconds", "0.2")
    from orchestrator.models import ApprovalRequest, Event, EventKind, Run

    runs = Run.objects.filter(workflow__name="refund")
    assert runs.count() == 25
    needing = [run for run in runs if run.input["amount"] > 100]
    assert len(needing) == 20  # one in five is small enough to need nobody
    for run in needing:
        (request,) = ApprovalRequest.objects.filter(run=run)
        assert request.outcome == "approve" and request.decided_by.username == "chaos-approver"
        assert request.requested_by.username == "chaos-requester"  # four-eyes: never the same person
        assert Event.objects.filter(run=run, kind=EventKind.APPROVAL_DECIDED).count() == 1
