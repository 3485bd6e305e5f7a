"""A claim's read in one prepared statement (PostgreSQL): the attempt, its run with the row's
version (``xmin``, for fast_checkpoint.py) and the run's workflow version without its document
(the definition is cached by content hash), built into the model instances the ORM would
build. The ORM's own query for this costs more to compile than PostgreSQL takes to answer it,
and a claim is read once per job.

The same statement claims the attempt, with its event, when nothing is to be checked first:
the attempt is scheduled and due, and its state had no rate limit, circuit breaker or guarded
tools when it was scheduled (``claim_deadline_seconds`` is set). A job then costs one round
trip to claim its step instead of a read and a compare-and-set; any other attempt is read, and
``transitions.claim_attempt`` checks and claims it as before."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from ..models import AttemptStatus, Event, EventKind, Run, StepAttempt, WorkflowVersion
from .eventlog import EventLog
from .fast_checkpoint import ATTEMPT, RUN
from .prepared import execute_prepared, in_transaction
from .rows import columns_of, fields_of

VERSION = WorkflowVersion._meta.db_table


def _columns(model: type[Model], skip: tuple[str, ...] = ()) -> list[Any]:
    return [field for field, _ in fields_of(model, skip)]


@cache
def _statement() -> tuple[str, tuple[list[Any], list[Any], list[Any]]]:
    attempt, run = _columns(StepAttempt), _columns(Run)
    version = _columns(WorkflowVersion, skip=("definition",))
    quote = connection.ops.quote_name
    select = [f"a.{quote(f.column)}" for f in attempt] + [f"r.{quote(f.column)}" for f in run] + [
        "r.xmin::text"] + [f"v.{quote(f.column)}" for f in version]
    event, events = Event._meta.db_table, columns_of(Event, skip=("id", "attempt_id"))
    # The claim's event: its attempt, state and queue wait are the claimed row's.
    logged = ", ".join(
        "c.run_id" if column == '"run_id"' else "c.state_name" if column == '"state_name"' else
        "e.data || jsonb_build_object('queue_wait_ms', c.queue_wait_ms)" if column == '"data"' else f"e.{column}"
        for column in events.split(", "))
    sql = f"""
        WITH claimed AS (
            UPDATE {ATTEMPT} SET status = %s, claim_token = %s::uuid, worker = %s, claimed_at = %s::timestamptz,
                lease_expires_at = %s::timestamptz,
                timeout_at = %s::timestamptz + make_interval(secs => claim_deadline_seconds)
            WHERE id = %s AND status = %s AND claim_deadline_seconds IS NOT NULL AND not_before IS NULL
            RETURNING id, run_id, state_name, timeout_at,
                round((extract(epoch FROM %s::timestamptz - scheduled_at) * 1000)::numeric, 1) AS queue_wait_ms
        ), logged AS (
            INSERT INTO {event} ({events}, attempt_id)
            SELECT {logged}, c.id FROM jsonb_populate_record(NULL::{event}, %s::jsonb) e, claimed c
        )
        SELECT (SELECT timeout_at FROM claimed), (SELECT queue_wait_ms::float8 FROM claimed), {", ".join(select)}
        FROM {ATTEMPT} a JOIN {RUN} r ON r.id = a.run_id JOIN {VERSION} v ON v.id = r.version_id WHERE a.id = %s"""
    return sql, (attempt, run, version)


def claimed_event(run_id: Any, worker: str, **data: Any) -> Event:
    """A claim's event for a statement that claims an attempt it finds itself (its attempt and
    state, and here its run, are the claimed row's), as ``EventLog`` logs any claim."""
    log = EventLog(run_id)
    log.add(EventKind.STEP_CLAIMED, worker=worker, **data)
    return log.pending[0]


def attempt_columns() -> list[Any]:
    """The attempt's fields in the order the claim's read returns them."""
    return _statement()[1][0]


def build_model(model: type[Model], fields: list[Any], values: list[Any]) -> Model:
    """The instance the ORM would build from these columns' values."""
    converted = [field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
                 for field, value in zip(fields, values, strict=True)]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def read_for_claim(attempt_id: int, claim: dict[str, Any],
                   event: str) -> tuple[StepAttempt | None, float | None]:
    """The attempt with its run (``run_xmin`` set) and the run's version, or None if it is gone;
    and, with the claim's fields (``attempts.claim_fields``) and its event's row (``rows_json``),
    the claim written when nothing was to be checked first: then the attempt carries the claim
    and the queue wait it logged is returned, else None (the attempt is as it was read)."""
    sql, (attempt_fields, run_fields, version_fields) = _statement()
    with in_transaction():
        row = execute_prepared(sql, [
            AttemptStatus.RUNNING.value, claim["claim_token"], claim["worker"], claim["claimed_at"],
            claim["lease_expires_at"], claim["claimed_at"], attempt_id, AttemptStatus.SCHEDULED.value,
            claim["claimed_at"], event, attempt_id])
    if row is None:
        return None, None
    timeout_at, queue_wait_ms, *values = row
    cut, xmin_at = len(attempt_fields), len(attempt_fields) + len(run_fields)
    attempt = build_model(StepAttempt, attempt_fields, values[:cut])
    run = build_model(Run, run_fields, values[cut:xmin_at])
    version = build_model(WorkflowVersion, version_fields, values[xmin_at + 1:])
    Run._meta.get_field("version").set_cached_value(run, version)
    StepAttempt._meta.get_field("run").set_cached_value(attempt, run)
    attempt.run_xmin = values[xmin_at]  # type: ignore[attr-defined]
    if queue_wait_ms is None:
        return attempt, None  # type: ignore[return-value]
    for name, value in {**claim, "status": AttemptStatus.RUNNING, "timeout_at": timeout_at}.items():
        setattr(attempt, name, value)
    return attempt, queue_wait_ms  # type: ignore[return-value]
