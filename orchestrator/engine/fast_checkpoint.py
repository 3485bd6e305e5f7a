"""The common checkpoint in one statement: a task of the main line succeeded and the next state
is a task, which this worker takes inline or which goes to its queue, or the task ends the run
(PostgreSQL only; everything else takes ``complete_attempt``).

``complete_attempt`` locks the run, reads it whole, and writes the attempt, the next attempt,
the run, its context entry and the events in seven round trips. Here the worker already holds
the run as it left it at its last checkpoint, with the row version (``xmin``) it saw then. One
statement with CTEs locks the run row only if that version is still the current one (any other
writer of the run, a cancel, a sweeper, a branch, changes it) and the attempt is still ours,
and then, depending on that lock, writes what ``complete_attempt`` would have written for this
case, in autocommit: the statement is its own transaction. When the version moved on, nothing
is written and the caller takes the general path, which reads the run again.

What is written is built by the same functions as on the general path (``build_attempt``,
``log_scheduled``, ``EventLog``), so both paths leave the same rows; tests/engine/test_fast_checkpoint
runs the same runs down both and compares them.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Model

from ..conf import ratchet_setting
from ..models import AttemptKind, AttemptStatus, ContextEntry, Event, EventKind, Run, RunStatus, StepAttempt
from . import clock
from .attempts import build_attempt, log_scheduled
from .budgets import limits
from .claims import Claim, Claimant, Usage
from .contracts import mapped_input
from .dispatch import dispatch_on_commit
from .eventlog import EventLog
from .lines import input_view
from .prepared import execute_prepared, in_transaction
from .rows import columns_of, insert_events, row_json, rows_json
from .signals import send_on_commit

RUN, ATTEMPT = Run._meta.db_table, StepAttempt._meta.db_table
logger = logging.getLogger("ratchet.executor")


def one_statement_paths() -> bool:
    """Are the one-statement claims, checkpoints and branch ends on (PostgreSQL, FAST_CHECKPOINT)?"""
    return connection.vendor == "postgresql" and bool(ratchet_setting("FAST_CHECKPOINT"))


def claim_in_one_statement(attempt: StepAttempt, fields: dict[str, Any], log: EventLog) -> bool:
    """``transitions.mark_claimed`` in one statement: the compare-and-set and its event."""
    sets, values = set_clause(StepAttempt, fields)
    sql = f"""
        WITH claimed AS (
            UPDATE {ATTEMPT} SET {sets} WHERE id = %s AND status = %s RETURNING id
        ), events AS ({insert_events("claimed", "claimed.id")})
        SELECT count(*) FROM claimed
    """
    with in_transaction():
        (claimed,) = execute_prepared(sql, [*values, attempt.pk, AttemptStatus.SCHEDULED.value,
                                            rows_json(log.pending)])
    if claimed:
        log.pending[0].attempt_id = attempt.pk
        send_on_commit(attempt.run_id, log.pending)
    return bool(claimed)


def eligible(claim: Claim) -> bool:
    """Is this checkpoint the plain case: a main-line task going on to a task (which this worker
    takes inline when it may, or which goes to its queue)?"""
    if claim.run_xmin is None or not one_statement_paths():
        return False
    attempt = claim.attempt
    if attempt.kind != AttemptKind.STEP or attempt.line_id is not None or claim.run.status != RunStatus.RUNNING:
        return False
    state = claim.state
    if state.type != "task" or state.gate is not None:
        return False
    if state.next is None:  # the run's last step: it succeeds (a child run tells its parent: not here)
        return claim.run.parent_id is None
    return claim.definition.state(state.next).type == "task"


def within_budgets(run: Run, claim: Claim, usage: Usage) -> bool:
    """Would the general path stop here (a budget used up)? Then it is the one to say so."""
    budgets = limits(claim.definition, run)
    if budgets.max_steps is not None and run.steps_used >= budgets.max_steps:
        return False
    if budgets.max_tokens is not None and run.tokens_used + usage.tokens > budgets.max_tokens:
        return False
    return budgets.max_cost is None or float(run.cost_used + usage.cost) <= budgets.max_cost


def checkpoint_one_statement(claim: Claim, output: Any, usage: Usage,
                             claimant: Claimant | None) -> tuple[bool, Claim | None]:
    """(True, the next claim if this worker took it) when checkpointed here; (False, None) when
    the general path must."""
    run, attempt, state, definition = claim.run, claim.attempt, claim.state, claim.definition
    if not within_budgets(run, claim, usage):
        return False, None
    # The whole context is read only when the next input needs an output (or it is read already).
    following = definition.state(state.next) if state.next is not None else None
    context: dict[str, Any] | None = None
    if "_context" in run.__dict__ or (following is not None and definition.reads_outputs(following)):
        context = {**run.context, state.context_key: output}
    log = EventLog(run)
    now = succeeded(attempt, output, usage, log)
    nxt, inline = None, False
    if following is not None:
        seen = context if context is not None else input_view(run, definition, following, None)
        nxt, inline = build_attempt(
            run, state_name=following.name, sequence=run.steps_used + 1, queue=following.queue,
            input=mapped_input(following, seen), claimant=claimant, state=following)
        log_scheduled(log, nxt, inline)
    else:
        log.add(EventKind.RUN_SUCCEEDED, state_name=state.name)  # as runstate.succeed_run
    try:
        sql, params = _statement(claim, usage, nxt, log.pending, output if nxt is None else None, now)
        with in_transaction():
            xmin, next_id = execute_prepared(sql, params)
    except DatabaseError:
        return False, None  # the general path meets the same refusal and handles it
    except (TypeError, ValueError):
        logger.warning("the one-statement checkpoint of attempt %s could not be built", attempt.pk, exc_info=True)
        return False, None
    if xmin is None:
        return False, None  # the run moved on (or the attempt is no longer ours): read it again
    run.tokens_used += usage.tokens
    run.cost_used += usage.cost
    if context is not None:
        run.__dict__["_context"] = context
    if nxt is not None:
        run.steps_used += 1
        nxt.pk = next_id
    else:
        run.status, run.output, run.finished_at = RunStatus.SUCCEEDED, output, now
    for event in log.pending:
        event.attempt_id = event.attempt.pk if event.attempt is not None else None
    send_on_commit(run.pk, log.pending)
    if nxt is None:
        return True, None
    if not inline:
        dispatch_on_commit(nxt.pk, nxt.queue)  # at once, unless a caller's transaction is open
        return True, None
    return True, Claim(attempt=nxt, run=run, definition=definition, token=nxt.claim_token,
                       worker=claim.worker, run_xmin=xmin)


def row_version(run_id: Any) -> str | None:
    """The run row's current version (``xmin``), read inside the transaction that last wrote it,
    so the next checkpoint can take the one-statement path. None off PostgreSQL."""
    if not one_statement_paths():
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text FROM {RUN} WHERE id = %s", [run_id])
        row = cursor.fetchone()
    return row[0] if row else None


@cache
def _set_sql(model: type[Model], names: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    fields = tuple(model._meta.get_field(name) for name in names)
    sql = ", ".join(f"{connection.ops.quote_name(f.column)} = %s::{f.db_type(connection)}" for f in fields)
    return sql, fields


def set_clause(model: type[Model], values: dict[str, Any]) -> tuple[str, list[Any]]:
    """``column = %s::type, ...`` of an UPDATE of these fields, and their values prepared by them."""
    sql, fields = _set_sql(model, tuple(values))
    prepared = zip(fields, values.values(), strict=True)
    return sql, [field.get_db_prep_save(value, connection) for field, value in prepared]


def succeeded(attempt: StepAttempt, output: Any, usage: Usage, log: EventLog) -> Any:
    """The claimed attempt succeeded with ``output`` (in memory; the statement writes it) and its
    event is logged, as ``complete_attempt`` and ``after_success`` do. Returns the time."""
    now = clock.now()
    attempt.status, attempt.output, attempt.finished_at = AttemptStatus.SUCCEEDED, output, now
    attempt.tokens, attempt.cost, attempt.lease_expires_at = usage.tokens, usage.cost, None
    log.add(EventKind.STEP_SUCCEEDED, attempt, duration_ms=round((now - attempt.claimed_at).total_seconds() * 1000, 2))
    return now


def attempt_done(attempt: StepAttempt) -> tuple[str, list[Any]]:
    """The SET clause that records a succeeded attempt (see ``succeeded``)."""
    return set_clause(StepAttempt, {name: getattr(attempt, name) for name in (
        "status", "output", "finished_at", "tokens", "cost", "lease_expires_at")})


NEXT = -1  # an event's attempt_id that stands for the attempt this statement inserts


def _statement(claim: Claim, usage: Usage, nxt: StepAttempt | None, events: list[Event], output: Any,
               now: Any) -> tuple[str, list[Any]]:
    """The statement; with no ``nxt``, the run succeeds with ``output`` at ``now``."""
    run, attempt = claim.run, claim.attempt
    done_sets, done_values = attempt_done(attempt)
    entry = rows_json([ContextEntry(run_id=run.pk, key=claim.state.context_key, attempt_id=attempt.pk, value=None)])
    marks = {str(id(e)): {"attempt_id": NEXT if nxt is not None and e.attempt is nxt else
                          (e.attempt.pk if e.attempt is not None else None)} for e in events}
    event_rows = rows_json(events, skip=("id",), **marks)
    if nxt is not None:
        run_values, next_values = [], [row_json(nxt)]
    else:
        output_field = Run._meta.get_field("output")
        run_values = [RunStatus.SUCCEEDED.value, output_field.get_db_prep_save(output, connection), now]
        next_values = []
    params = [run.pk, claim.run_xmin, RunStatus.RUNNING.value, attempt.pk, AttemptStatus.RUNNING.value,
              claim.token, *run_values, usage.tokens, usage.cost, *done_values, attempt.pk, entry,
              *next_values, event_rows]
    return _statement_sql(nxt is not None, done_sets), params


@cache
def _statement_sql(goes_on: bool, done_sets: str) -> str:
    """The statement's text: the same for every step of the same shape, so it is prepared once."""
    if goes_on:
        run_sets = "steps_used = steps_used + 1"
        following = f"""INSERT INTO {ATTEMPT} ({columns_of(StepAttempt)})
            SELECT {columns_of(StepAttempt)} FROM jsonb_populate_record(NULL::{ATTEMPT}, %s::jsonb), ok RETURNING id"""
    else:
        run_sets = "status = %s, output = %s::jsonb, finished_at = %s::timestamptz"
        following = "SELECT NULL::bigint AS id"
    next_id = f"CASE WHEN e.attempt_id = {NEXT} THEN (SELECT id FROM nxt) ELSE e.attempt_id END"
    return f"""
        WITH ok AS (
            SELECT r.id FROM {RUN} r
            WHERE r.id = %s AND r.xmin::text = %s AND r.status = %s AND EXISTS (
                SELECT 1 FROM {ATTEMPT} a WHERE a.id = %s AND a.status = %s AND a.claim_token = %s)
            FOR NO KEY UPDATE OF r
        ), run_row AS (
            UPDATE {RUN} SET {run_sets}, tokens_used = tokens_used + %s, cost_used = cost_used + %s
            WHERE id = (SELECT id FROM ok) RETURNING xmin::text AS xmin
        ), done AS (
            UPDATE {ATTEMPT} SET {done_sets} WHERE id = %s AND EXISTS (SELECT 1 FROM ok)
        ), entry AS (
            INSERT INTO {ContextEntry._meta.db_table} ({columns_of(ContextEntry)})
            SELECT {columns_of(ContextEntry)} FROM jsonb_populate_recordset(NULL::{ContextEntry._meta.db_table},
                                                                            %s::jsonb), ok
        ), nxt AS (
            {following}
        ), events AS ({insert_events("ok", next_id)})
        SELECT (SELECT xmin FROM run_row), (SELECT id FROM nxt)
    """
