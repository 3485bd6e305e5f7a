"""The common checkpoint in one statement: a task of the main line succeeded and the next state
is a task, which this worker takes inline or which goes to its queue (PostgreSQL only;
everything else takes ``complete_attempt``).

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

from typing import Any

from django.db import DatabaseError, connection, transaction
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
from .signals import send_on_commit

RUN, ATTEMPT = Run._meta.db_table, StepAttempt._meta.db_table


def eligible(claim: Claim) -> bool:
    """Is this checkpoint the plain case: a main-line task going on to a task (which this worker
    takes inline when it may, or which goes to its queue)?"""
    if claim.run_xmin is None or connection.vendor != "postgresql" or not ratchet_setting("FAST_CHECKPOINT"):
        return False
    attempt = claim.attempt
    if attempt.kind != AttemptKind.STEP or attempt.line_id is not None or claim.run.status != RunStatus.RUNNING:
        return False
    state = claim.state
    if state.type != "task" or state.gate is not None or state.next is None:
        return False
    return claim.definition.state(state.next).type == "task"


def _within_budgets(run: Run, claim: Claim, usage: Usage) -> bool:
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
    if not _within_budgets(run, claim, usage):
        return False, None
    following = definition.state(state.next)  # type: ignore[arg-type]
    # The whole context is read only when the next input needs an output (or it is read already).
    context: dict[str, Any] | None = None
    if "_context" in run.__dict__ or definition.reads_outputs(following):
        context = {**run.context, state.context_key: output}
    seen = context if context is not None else input_view(run, definition, following, None)
    now = clock.now()
    nxt, inline = build_attempt(
        run, state_name=following.name, sequence=run.steps_used + 1, queue=following.queue,
        input=mapped_input(following, seen), claimant=claimant, state=following)
    log = EventLog(run)
    attempt.status, attempt.output, attempt.finished_at = AttemptStatus.SUCCEEDED, output, now
    attempt.tokens, attempt.cost, attempt.lease_expires_at = usage.tokens, usage.cost, None
    log.add(EventKind.STEP_SUCCEEDED, attempt, duration_ms=round((now - attempt.claimed_at).total_seconds() * 1000, 2))
    log_scheduled(log, nxt, inline)
    sql, params = _statement(claim, usage, nxt, log.pending)
    try:
        with transaction.atomic(savepoint=True) if connection.in_atomic_block else _autocommit():
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                xmin, next_id = cursor.fetchone()
    except DatabaseError:
        return False, None  # the general path meets the same refusal and handles it
    if next_id is None:
        return False, None  # the run moved on (or the attempt is no longer ours): read it again
    run.steps_used += 1
    run.tokens_used += usage.tokens
    run.cost_used += usage.cost
    if context is not None:
        run.__dict__["_context"] = context
    nxt.pk = next_id
    for event in log.pending:
        event.attempt_id = event.attempt.pk
    send_on_commit(run.pk, log.pending)
    if not inline:
        dispatch_on_commit(nxt.pk, nxt.queue)  # at once, unless a caller's transaction is open
        return True, None
    return True, Claim(attempt=nxt, run=run, definition=definition, token=nxt.claim_token,
                       worker=claim.worker, run_xmin=xmin)


def row_version(run_id: Any) -> str | None:
    """The run row's current version (``xmin``), read inside the transaction that last wrote it,
    so the next checkpoint can take the one-statement path. None off PostgreSQL."""
    if connection.vendor != "postgresql" or not ratchet_setting("FAST_CHECKPOINT"):
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text FROM {RUN} WHERE id = %s", [run_id])
        row = cursor.fetchone()
    return row[0] if row else None


class _autocommit:
    """No transaction block: the one statement commits on its own."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _values(obj: Model, skip: tuple[str, ...] = ("id",)) -> tuple[list[str], list[str], list[Any]]:
    """Columns, typed placeholders and values of an unsaved row, prepared by its model's fields."""
    columns, holders, values = [], [], []
    for field in obj._meta.concrete_fields:
        if field.column in skip:
            continue
        columns.append(connection.ops.quote_name(field.column))
        holders.append(f"%s::{field.db_type(connection)}")
        values.append(field.get_db_prep_save(field.pre_save(obj, True), connection))
    return columns, holders, values


def _statement(claim: Claim, usage: Usage, nxt: StepAttempt, events: list[Event]) -> tuple[str, list[Any]]:
    run, attempt = claim.run, claim.attempt
    done_fields = ("status", "output", "finished_at", "tokens", "cost", "lease_expires_at")
    done_sets, done_values = [], []
    for name in done_fields:
        field = StepAttempt._meta.get_field(name)
        done_sets.append(f"{connection.ops.quote_name(field.column)} = %s::{field.db_type(connection)}")
        done_values.append(field.get_db_prep_save(getattr(attempt, field.attname), connection))
    entry_columns, entry_holders, entry_values = _values(ContextEntry(
        run_id=run.pk, key=claim.state.context_key, attempt_id=attempt.pk, value=None))
    next_columns, next_holders, next_values = _values(nxt)
    event_columns = _values(events[0], skip=("id", "attempt_id"))[0]
    event_selects, event_values = [], []
    for event in events:
        _, holders, values = _values(event, skip=("id", "attempt_id"))
        of_next = event.attempt is nxt
        event_selects.append(f"SELECT {', '.join(holders)}, {'nxt.id' if of_next else '%s::bigint'} "
                             f"FROM {'nxt' if of_next else 'ok'}")
        event_values += values if of_next else [*values, attempt.pk]
    sql = f"""
        WITH ok AS (
            SELECT r.id FROM {RUN} r
            WHERE r.id = %s AND r.xmin::text = %s AND r.status = %s AND EXISTS (
                SELECT 1 FROM {ATTEMPT} a WHERE a.id = %s AND a.status = %s AND a.claim_token = %s)
            FOR NO KEY UPDATE OF r
        ), run_row AS (
            UPDATE {RUN} SET steps_used = steps_used + 1, tokens_used = tokens_used + %s,
                cost_used = cost_used + %s
            WHERE id = (SELECT id FROM ok) RETURNING xmin::text AS xmin
        ), done AS (
            UPDATE {ATTEMPT} SET {', '.join(done_sets)} WHERE id = %s AND EXISTS (SELECT 1 FROM ok)
        ), entry AS (
            INSERT INTO {ContextEntry._meta.db_table} ({', '.join(entry_columns)})
            SELECT {', '.join(entry_holders)} FROM ok
        ), nxt AS (
            INSERT INTO {ATTEMPT} ({', '.join(next_columns)}) SELECT {', '.join(next_holders)} FROM ok RETURNING id
        ), events AS (
            INSERT INTO {Event._meta.db_table} ({', '.join(event_columns)}, attempt_id)
            {' UNION ALL '.join(event_selects)}
        )
        SELECT (SELECT xmin FROM run_row), (SELECT id FROM nxt)
    """
    params = [run.pk, claim.run_xmin, RunStatus.RUNNING.value, attempt.pk, AttemptStatus.RUNNING.value,
              claim.token, usage.tokens, usage.cost, *done_values, attempt.pk, *entry_values, *next_values,
              *event_values]
    return sql, params


def with_run_version(attempts: Any) -> Any:
    """Attempts (joined to their run) with the run row's version as ``run_xmin`` (PostgreSQL)."""
    if connection.vendor != "postgresql" or not ratchet_setting("FAST_CHECKPOINT"):
        return attempts
    return attempts.extra(select={"run_xmin": f'"{RUN}"."xmin"::text'})
