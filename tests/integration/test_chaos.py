"""The chaos command at CI scale: real workers SIGKILLed every 2 s and Redis flushed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orchestrator.processes import MANAGE

pytestmark = [pytest.mark.engine, pytest.mark.integration, pytest.mark.chaos]


def test_chaos_ends_with_every_run_succeeded_and_no_duplicate_effect(worker_env):
    result = subprocess.run(
        [sys.executable, MANAGE, "chaos", "--runs", "40", "--workers", "2", "--kill-every", "2",
         "--flush-redis-every", "10", "--timeout", "240", "--pack-seconds", "0.3"],
        env={**os.environ, **worker_env}, capture_output=True, text=True, timeout=300,
    )
    last = result.stdout.strip().splitlines()[-1]
    print(result.stdout[-3000:])
    assert last.startswith("chaos: runs=40 succeeded=40 failed=0 "), last
    assert " duplicate_effects=0 lost_runs=0 " in last, last
    assert result.returncode == 0
    assert "redis_flushes=0" not in result.stdout and "kills=0 " not in result.stdout
