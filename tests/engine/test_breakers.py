"""Circuit breakers (engine/breakers.py) on the real Redis: consecutive failures open a
handler's breaker; while open, its steps are held back without being called, failed or retried;
after open_seconds one probe goes, and its success closes the breaker (its failure reopens it);
the changes are events of the runs that caused them; bad settings are refused."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator.demo import sink
from orchestrator.engine import breakers
from orchestrator.engine.breakers import admit, configured, record
from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind, RunStatus, StepAttempt

from ..workflows import chain, task
from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

GUARDED = "test.fail_until_flag"


@pytest.fixture
def guarded(settings, redis_conn):
    """test.fail_until_flag opens its breaker after 2 failures in a row, for 1 s."""
    settings.RATCHET = {**settings.RATCHET, "CIRCUIT_BREAKERS": {GUARDED: {"failures": 2, "open_seconds": 1}}}
    return configured()[GUARDED]


def test_failures_in_a_row_open_it_and_one_probe_closes_it(guarded):
    assert record(GUARDED, guarded, succeeded=False) == ""
    assert record(GUARDED, guarded, succeeded=True) == ""  # a success resets the count
    assert record(GUARDED, guarded, succeeded=False) == ""
    assert record(GUARDED, guarded, succeeded=False) == "opened"
    assert 0.9 < admit(GUARDED, guarded, 1) <= 1.0  # open: wait for it
    time.sleep(1.01)
    assert admit(GUARDED, guarded, 2) == 0.0  # half-open: attempt 2 is the probe
    assert admit(GUARDED, guarded, 3) == pytest.approx(1.0)  # the others wait for the probe
    assert admit(GUARDED, guarded, 2) == 0.0
    assert record(GUARDED, guarded, succeeded=True) == "closed"
    assert admit(GUARDED, guarded, 3) == 0.0


def test_a_failed_probe_opens_it_again(guarded):
    record(GUARDED, guarded, succeeded=False)
    record(GUARDED, guarded, succeeded=False)
    time.sleep(1.01)
    assert admit(GUARDED, guarded, 7) == 0.0
    assert record(GUARDED, guarded, succeeded=False) == "opened"
    assert admit(GUARDED, guarded, 8) > 0.9


def test_a_reset_closes_it(guarded):
    record(GUARDED, guarded, succeeded=False)
    record(GUARDED, guarded, succeeded=False)
    assert [(s.handler, s.state, s.failures) for s in breakers.states()] == [(GUARDED, "open", 2)]
    breakers.reset(GUARDED)
    assert admit(GUARDED, guarded, 1) == 0.0 and breakers.states()[0].state == "closed"


@pytest.mark.parametrize("spec", [{"failures": 0, "open_seconds": 5}, {"failures": 3},
                                  {"failures": 3, "open_seconds": 0}, {"failures": "3", "open_seconds": 5}])
def test_bad_breakers_are_refused_with_what_to_fix(settings, spec):
    settings.RATCHET = {**settings.RATCHET, "CIRCUIT_BREAKERS": {GUARDED: spec}}
    with pytest.raises(ImproperlyConfigured, match=f"circuit breaker of '{GUARDED}'"):
        configured()


def test_runs_hold_back_while_it_is_open_then_finish_after_the_probe(guarded, tmp_path, sink_path):
    flag = tmp_path / "flag"
    chain("guarded_calls", ("call", task(GUARDED, retry=[{"max_attempts": 3, "interval_seconds": 0}])))
    first = drain(start_run("guarded_calls", {"flag": str(flag)})[0])
    assert first.status == RunStatus.FAILED
    # the second failure opened the breaker; the third try was held back until it half-opened,
    # went as the probe, failed, and opened it again
    opened = Event.objects.filter(kind=EventKind.BREAKER_OPENED).order_by("id")
    assert [(e.run_id, e.attempt.attempt, e.data["handler"]) for e in opened] == [
        (first.pk, 2, GUARDED), (first.pk, 3, GUARDED)]
    held = Event.objects.get(run=first, kind=EventKind.CIRCUIT_OPEN)
    assert held.attempt.attempt == 3 and 900 < held.data["wait_ms"] <= 1000
    assert sink.requests(f"exec-{first.pk}-call", sink_path) == 3
    flag.touch()  # the tool is back
    second = drain(start_run("guarded_calls", {"flag": str(flag)})[0])
    assert second.status == RunStatus.SUCCEEDED
    held = Event.objects.filter(run=second, kind=EventKind.CIRCUIT_OPEN)
    assert held.exists() and all(event.data["wait_ms"] > 0 for event in held)
    assert Event.objects.filter(run=second, kind=EventKind.BREAKER_CLOSED).count() == 1  # its step was the probe
    assert set(StepAttempt.objects.filter(run=second).values_list("attempt", flat=True)) == {1}  # no retry
