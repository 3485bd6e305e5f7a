"""A branch's last step, checkpointed in one statement after the run's lock (PostgreSQL).

A fan-out's branches end one by one, each in a transaction that locks the run (so the fork's
counter moves one at a time and exactly one branch joins). For every branch but the one that
completes the join, that transaction only records: the attempt succeeded, the branch ended
with its output, the fork counted it, the run was charged, two events. Here that is one
statement, run after the run's row is locked (the lock, the statement and the commit go in one
round trip: prepared.execute_in_one_trip), so it sees every branch that ended before it: it
writes only if the run and the branch are still running, the attempt is still this worker's,
and the fork is open and still short of its join by more than this branch; otherwise nothing is
written and ``complete_attempt`` runs (it joins, or finds the branch cancelled).

The rows are the ones ``complete_attempt`` writes for this case (``after_success``, ``store``,
``end_line``); tests/engine/test_fast_checkpoint runs a fan-out down both paths and compares them.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connection

from ..conf import ratchet_setting
from ..models import (
    AttemptKind,
    AttemptStatus,
    EventKind,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    RunStatus,
    StepAttempt,
)
from .budgets import limits
from .claims import Claim, Usage
from .eventlog import EventLog
from .fast_checkpoint import ATTEMPT, RUN, attempt_done, insert_events, rows_json, succeeded
from .prepared import execute_in_one_trip
from .signals import send_on_commit

LINE, FORK = Line._meta.db_table, Fork._meta.db_table


def ends_a_branch(claim: Claim) -> bool:
    """Is this the plain case: a branch's task with nothing after it (the branch ends)?"""
    if connection.vendor != "postgresql" or not ratchet_setting("FAST_CHECKPOINT"):
        return False
    attempt = claim.attempt
    if attempt.kind != AttemptKind.STEP or attempt.line_id is None:
        return False
    state = claim.state
    return state.type == "task" and state.gate is None and state.next is None


def end_branch(claim: Claim, output: Any, usage: Usage) -> bool:
    """True when checkpointed here; False when ``complete_attempt`` must (nothing written)."""
    run, attempt, state = claim.run, claim.attempt, claim.state
    budgets = limits(claim.definition, run)
    if (usage.tokens or usage.cost) and (budgets.max_tokens is not None or budgets.max_cost is not None):
        return False  # the run's totals move with every branch: the general path charges the locked row
    log = EventLog(run)
    now = succeeded(attempt, output, usage, log)
    done_sets, done_values = attempt_done(attempt)
    log.add(EventKind.BRANCH_FINISHED, state_name=state.name, branch=attempt.branch_path, outcome="succeeded")
    stored = StepAttempt._meta.get_field("output").get_db_prep_save(output, connection)
    events = rows_json(log.pending, **{
        str(id(e)): {"attempt_id": e.attempt.pk if e.attempt is not None else None} for e in log.pending})
    sql = f"""
        WITH gate AS (
            SELECT 1 FROM {RUN} r, {ATTEMPT} a, {LINE} l, {FORK} f
            WHERE r.id = %s AND r.status = %s AND a.id = %s AND a.status = %s AND a.claim_token = %s
              AND l.id = a.line_id AND l.status = %s AND f.id = l.fork_id AND f.status = %s
              AND f.kind = %s AND f.done + 1 < f.needed
        ), done AS (
            UPDATE {ATTEMPT} SET {done_sets} WHERE id = %s AND EXISTS (SELECT 1 FROM gate)
        ), line_row AS (
            UPDATE {LINE} SET status = %s, output = %s::jsonb, finished_at = %s::timestamptz,
                context = context || jsonb_build_object(%s::text, %s::jsonb)
            WHERE id = %s AND EXISTS (SELECT 1 FROM gate)
        ), fork_row AS (
            UPDATE {FORK} SET done = done + 1
            WHERE id = (SELECT fork_id FROM {LINE} WHERE id = %s) AND EXISTS (SELECT 1 FROM gate)
        ), run_row AS (
            UPDATE {RUN} SET tokens_used = tokens_used + %s, cost_used = cost_used + %s
            WHERE id = %s AND EXISTS (SELECT 1 FROM gate)
        ), events AS ({insert_events("gate")})
        SELECT count(*) FROM gate
    """
    params = [run.pk, RunStatus.RUNNING.value, attempt.pk, AttemptStatus.RUNNING.value, claim.token,
              LineStatus.RUNNING.value, ForkStatus.OPEN.value, "parallel",
              *done_values, attempt.pk,
              LineStatus.SUCCEEDED.value, stored, now, state.context_key, stored, attempt.line_id,
              attempt.line_id, usage.tokens, usage.cost, run.pk, events]
    try:
        # The run locked first, so the statement's snapshot holds every branch that ended before it.
        _, (written,) = execute_in_one_trip([  # type: ignore[misc]
            (f"SELECT 1 FROM {RUN} WHERE id = %s FOR NO KEY UPDATE", [run.pk]), (sql, params)])
    except DatabaseError:
        return False  # the general path meets the same refusal and handles it
    if written:
        send_on_commit(run.pk, log.pending)
    return bool(written)
