"""A circuit breaker shared by three real workers: failures open it, the other runs' steps are
held back (not called, not failed, not retried), one probe half-opens it and its success closes
it, and every healthy run finishes."""

from __future__ import annotations

import json

import pytest

from orchestrator.demo import sink
from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind, RunStatus, StepAttempt

from ..conftest import wait_for
from ..workflows import chain, task
from .real_workers import settle

pytestmark = [pytest.mark.engine, pytest.mark.integration]

ENV = {"RATCHET_CIRCUIT_BREAKERS": json.dumps({"demo.partner_api": {"failures": 3, "open_seconds": 2}}),
       "RATCHET_RATE_LIMITS": "{}"}


def test_failures_open_the_breaker_for_every_worker_and_a_probe_closes_it(workers, sink_path):
    chain("partner_calls", ("ask", task("demo.partner_api", retry=[{"max_attempts": 2, "interval_seconds": 0}])))
    chain("partner_down", ("ask", task("demo.partner_api")))  # one try each: three failures, no more
    workers(3, extra_env=ENV)
    down = {f"down{i}": start_run("partner_down", {"partner_down": True, "n": i})[0] for i in range(3)}
    wait_for(lambda: Event.objects.filter(kind=EventKind.BREAKER_OPENED).exists(), 30, what="the breaker to open")
    healthy = {f"ok{i}": start_run("partner_calls", {"n": i})[0] for i in range(6)}
    wait_for(lambda: Event.objects.filter(kind=EventKind.CIRCUIT_OPEN, run__in=list(healthy.values())).exists(), 15,
             what="healthy steps held back")
    assert sink.arrivals("partner_api", sink_path) == []  # nothing got through while it was open

    finished = settle({**down, **healthy}, timeout=60)
    assert all(finished[label].status == RunStatus.FAILED for label in down)
    assert all(finished[label].status == RunStatus.SUCCEEDED for label in healthy)
    assert len(sink.arrivals("partner_api", sink_path)) == 6  # each healthy run called the partner once
    healthy_ids = [run.pk for run in healthy.values()]
    assert set(StepAttempt.objects.filter(run__in=healthy_ids).values_list("attempt", flat=True)) == {1}
    closed = Event.objects.filter(kind=EventKind.BREAKER_CLOSED)
    assert closed.count() == 1 and closed.get().run_id in healthy_ids  # the probe was a healthy step
