"""A rate limit shared by three real workers: the partner API sees at most the rate it allows
(counted where the calls arrive), every run succeeds, and no step is failed or retried for it."""

from __future__ import annotations

import json

import pytest

from orchestrator.demo import sink
from orchestrator.engine.runs import start_run
from orchestrator.models import EventKind, StepAttempt

from ..workflows import chain, task
from .real_workers import settle

pytestmark = [pytest.mark.engine, pytest.mark.integration]

RATE, CALLS = 10, 40


def test_three_workers_share_one_limit_and_the_partner_sees_its_rate(workers, sink_path):
    limits = {"RATCHET_RATE_LIMITS": json.dumps({"demo.partner_api": {"rate": RATE, "burst": 1}})}
    chain("partner_calls", ("ask", task("demo.partner_api")), ("done", {"type": "succeed"}))
    runs = {str(i): start_run("partner_calls", {"n": i})[0] for i in range(CALLS)}
    workers(3, extra_env=limits)
    finished = settle(runs, timeout=60)
    assert {run.status for run in finished.values()} == {"succeeded"}

    calls = sink.arrivals("partner_api", sink_path)
    assert len(calls) == CALLS
    busiest = max(sum(1 for t in calls if start <= t < start + 1.0) for start in calls)
    assert busiest <= RATE + 2, busiest  # the rate, its burst of one, and a little arrival jitter
    observed = (len(calls) - 1) / (calls[-1] - calls[0])
    assert observed == pytest.approx(RATE, rel=0.1), observed

    asks = StepAttempt.objects.filter(state_name="ask")
    assert set(asks.values_list("attempt", flat=True)) == {1} and set(asks.values_list("status", flat=True)) == {
        "succeeded"}
    assert sum(run.events.filter(kind=EventKind.THROTTLED).count() for run in finished.values()) >= CALLS - 3
