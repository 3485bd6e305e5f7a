"""Shared rate limits (engine/ratelimits.py) on the real Redis: a burst goes at once, then one
call per interval, each waiter with its own slot; a throttled step holds no worker, is not a
failure or a retry, and leaves a throttled event; bad settings are refused; no Redis, no limit."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator.demo import sink
from orchestrator.engine import ratelimits
from orchestrator.engine.ratelimits import Limit, acquire, configured
from orchestrator.engine.runs import start_run
from orchestrator.models import AttemptStatus, EventKind, RunStatus, StepAttempt

from ..workflows import chain, task
from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def limited(settings, redis_conn):
    """demo.partner_api limited to 20 calls a second, bursts of 2."""
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {"demo.partner_api": {"rate": 20, "burst": 2}}}
    return configured()["demo.partner_api"]


def test_a_burst_goes_at_once_then_each_caller_gets_its_own_later_slot(limited):
    waits = [acquire("demo.partner_api", limited, attempt_id) for attempt_id in range(1, 6)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    # then one slot per 50 ms, each reserved for its caller: ~0.05, ~0.10, ~0.15 s
    for index, wait in enumerate(waits[2:], start=1):
        assert wait == pytest.approx(0.05 * index, abs=0.02), waits
    # a waiter back early is told to wait again, not put behind the others
    assert 0 < acquire("demo.partner_api", limited, 5) <= waits[2] + 0.01


def test_a_waiter_back_on_time_goes_and_leaves_the_line(limited, redis_conn):
    acquire("demo.partner_api", limited, 1)
    acquire("demo.partner_api", limited, 2)
    wait = acquire("demo.partner_api", limited, 3)
    assert wait > 0 and redis_conn.zscore("ratchet:ratelimit:demo.partner_api:waiters", 3) is not None
    time.sleep(wait + 0.005)
    assert acquire("demo.partner_api", limited, 3) == 0.0
    assert redis_conn.zscore("ratchet:ratelimit:demo.partner_api:waiters", 3) is None


@pytest.mark.parametrize("spec", [{"rate": 0}, {"rate": "fast"}, {"rate": 5, "burst": 0}, {"rate": 5, "burst": 1.5},
                                  "5/s"])
def test_bad_limits_are_refused_with_what_to_fix(settings, spec):
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {"demo.partner_api": spec}}
    with pytest.raises(ImproperlyConfigured, match="rate limit of 'demo.partner_api'"):
        configured()


def test_without_redis_limits_are_not_enforced(limited, monkeypatch):
    def unreachable(url):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(ratelimits, "_script", unreachable)
    assert acquire("demo.partner_api", limited, 1) == 0.0


def test_a_throttled_step_waits_without_failing_or_retrying_and_every_run_succeeds(settings, redis_conn, sink_path):
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {"demo.partner_api": {"rate": 4, "burst": 1}}}
    chain("partner_calls", ("ask", task("demo.partner_api")), ("done", {"type": "succeed"}))
    runs = [start_run("partner_calls", {"n": i})[0] for i in range(6)]
    finished = [drain(run, every_run=True) for run in runs]
    assert [run.status for run in finished] == [RunStatus.SUCCEEDED] * 6
    asks = StepAttempt.objects.filter(state_name="ask")
    assert asks.count() == 6 and set(asks.values_list("attempt", flat=True)) == {1}  # no retries
    assert not StepAttempt.objects.exclude(status=AttemptStatus.SUCCEEDED).exists()
    throttled = [event for run in finished for event in run.events.filter(kind=EventKind.THROTTLED)]
    assert len(throttled) >= 3  # six calls at four a second, one at a time
    assert all(event.data["handler"] == "demo.partner_api" and event.data["wait_ms"] > 0 for event in throttled)
    assert all(event.data["limit"] == "4/s, burst 1" for event in throttled)
    calls = sink.arrivals("partner_api", sink_path)
    assert len(calls) == 6 and calls[-1] - calls[0] >= 5 * 0.25 - 0.05  # the partner saw at most 4 a second


def test_an_unlimited_handler_is_never_throttled(limited, sink_path):
    chain("free_calls", ("ask", task("demo.noop")))
    runs = [drain(start_run("free_calls", {"n": i})[0]) for i in range(4)]
    assert all(run.status == RunStatus.SUCCEEDED for run in runs)
    assert not any(run.events.filter(kind=EventKind.THROTTLED).exists() for run in runs)


def test_a_limit_is_described_for_people():
    assert Limit(2.5, 10).describe() == "2.5/s, burst 10"
