"""A job's claim (PostgreSQL): the read that claims its attempt in the same statement when nothing
is to be checked first (engine/claim_read.py), and the read, check and claim of any other."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.engine import clock
from orchestrator.engine.runs import start_run
from orchestrator.engine.transitions import claim_attempt
from orchestrator.models import AttemptStatus, Event, EventKind, Run, StepAttempt

from ..workflows import chain, task

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, fast_engine):
    if connection.vendor != "postgresql":
        pytest.skip("the claiming read is PostgreSQL's; SQLite reads, checks and claims")
    clock.sync()


def started(name: str, state: dict) -> StepAttempt:
    chain(name, ("a", state))
    run, _ = start_run(name)
    return run.attempts.get()


def claimed_in(attempt_id: int, worker: str) -> tuple[object, int]:
    with CaptureQueriesContext(connection) as sent:
        claim = claim_attempt(attempt_id, worker)
    return claim, len(sent.captured_queries)


def test_a_step_with_nothing_to_check_is_claimed_by_its_read_with_its_event():
    attempt = started("plain", task("demo.noop", timeout_seconds=90))
    assert attempt.claim_deadline_seconds == 90
    claim, statements = claimed_in(attempt.pk, "w1")
    assert claim is not None and statements == 1
    row = StepAttempt.objects.get(pk=attempt.pk)
    assert (row.status, row.worker, row.claim_token) == (AttemptStatus.RUNNING, "w1", claim.token)
    assert row.timeout_at == row.claimed_at + timedelta(seconds=90)
    assert row.lease_expires_at > row.claimed_at
    # What the worker holds is what the row says, and the run as read with the claim.
    held = claim.attempt
    assert (held.status, held.claimed_at, held.timeout_at, held.lease_expires_at) == (
        row.status, row.claimed_at, row.timeout_at, row.lease_expires_at)
    assert claim.run.pk == row.run_id and claim.run_xmin is not None and claim.state.name == "a"
    (event,) = Event.objects.filter(run_id=row.run_id, kind=EventKind.STEP_CLAIMED)
    assert (event.attempt_id, event.state_name, event.data["worker"]) == (attempt.pk, "a", "w1")
    assert event.data["queue_wait_ms"] == pytest.approx(
        (row.claimed_at - row.scheduled_at).total_seconds() * 1000, abs=0.1)


def test_a_second_delivery_of_the_job_claims_nothing():
    attempt = started("twice", task("demo.noop"))
    first, _ = claimed_in(attempt.pk, "w1")
    second, statements = claimed_in(attempt.pk, "w2")
    assert first is not None and second is None and statements == 1
    assert StepAttempt.objects.get(pk=attempt.pk).worker == "w1"
    assert Event.objects.filter(run_id=attempt.run_id, kind=EventKind.STEP_CLAIMED).count() == 1


def test_a_rate_limited_step_is_read_then_checked_then_claimed(settings):
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {"demo.noop": {"rate": 100, "burst": 5}}}
    attempt = started("limited", task("demo.noop"))
    assert attempt.claim_deadline_seconds is None
    claim, statements = claimed_in(attempt.pk, "w1")
    assert claim is not None and statements == 2  # the read, then the compare-and-set with its event
    assert StepAttempt.objects.get(pk=attempt.pk).status == AttemptStatus.RUNNING


def test_a_step_not_due_yet_is_read_and_left_for_its_timer():
    attempt = started("later", task("demo.noop"))
    StepAttempt.objects.filter(pk=attempt.pk).update(not_before=clock.now() + timedelta(minutes=5))
    claim, _ = claimed_in(attempt.pk, "w1")
    assert claim is None
    row = StepAttempt.objects.get(pk=attempt.pk)
    assert row.status == AttemptStatus.SCHEDULED and row.dispatched_at is None  # back on its timer
    assert not Event.objects.filter(run_id=row.run_id, kind=EventKind.STEP_CLAIMED).exists()
    assert Run.objects.get(pk=row.run_id).status == "running"
