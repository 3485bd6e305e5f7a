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

from functools import cache
from typing import Any

from django.db import DatabaseError, connection

from ..models import (
    AttemptKind,
    AttemptStatus,
    Event,
    EventKind,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    RunStatus,
    StepAttempt,
)
from .attempts import claim_fields
from .budgets import limits
from .claim_read import attempt_columns, build_model, claimed_event
from .claims import Claim, Claimant, Usage
from .dispatch import withdraw_job
from .eventlog import EventLog
from .fast_checkpoint import ATTEMPT, RUN, attempt_done, one_statement_paths, succeeded
from .prepared import execute_in_one_trip
from .rows import columns_of, row_json, rows_json
from .signals import send_on_commit

LINE, FORK, EVENT = Line._meta.db_table, Fork._meta.db_table, Event._meta.db_table


def ends_a_branch(claim: Claim) -> bool:
    """Is this the plain case: a branch's task with nothing after it (the branch ends)?"""
    if not one_statement_paths():
        return False
    attempt = claim.attempt
    if attempt.kind != AttemptKind.STEP or attempt.line_id is None:
        return False
    state = claim.state
    return state.type == "task" and state.gate is None and state.next is None


def end_branch(claim: Claim, output: Any, usage: Usage,
               claimant: Claimant | None = None) -> tuple[bool, Claim | None]:
    """(True, the branch this worker takes next, if any) when checkpointed here; (False, None)
    when ``complete_attempt`` must (nothing written)."""
    run, attempt, state = claim.run, claim.attempt, claim.state
    budgets = limits(claim.definition, run)
    if (usage.tokens or usage.cost) and (budgets.max_tokens is not None or budgets.max_cost is not None):
        return False, None  # the run's totals move with every branch: the general path charges the locked row
    log = EventLog(run)
    now = succeeded(attempt, output, usage, log)
    done_sets, done_values = attempt_done(attempt)
    log.add(EventKind.BRANCH_FINISHED, state_name=state.name, branch=attempt.branch_path, outcome="succeeded")
    stored = StepAttempt._meta.get_field("output").get_db_prep_save(output, connection)
    events = rows_json(log.pending, **{
        str(id(e)): {"attempt_id": e.attempt.pk if e.attempt is not None else None} for e in log.pending})
    may_take = claimant is not None and claimant.chain_left > 0
    # The taken step's claim, as claim_fields makes any claim; its deadline is its own (in SQL).
    taking = claim_fields(claim.worker, None, now)
    params = [run.pk, RunStatus.RUNNING.value, attempt.pk, AttemptStatus.RUNNING.value, claim.token,
              LineStatus.RUNNING.value, ForkStatus.OPEN.value, "parallel",
              *done_values, attempt.pk,
              LineStatus.SUCCEEDED.value, stored, now, state.context_key, stored, attempt.line_id,
              attempt.line_id, usage.tokens, usage.cost, run.pk, bool(usage.tokens or usage.cost),
              may_take, run.pk, claimant.queue if claimant is not None else "",
              taking["claim_token"], claim.worker, taking["claimed_at"], taking["lease_expires_at"], now,
              events, row_json(claimed_event(run.pk, claim.worker, inline=True))]
    try:
        # The run locked first, so the statement's snapshot holds every branch that ended before it.
        _, row = execute_in_one_trip([
            (f"SELECT 1 FROM {RUN} WHERE id = %s FOR NO KEY UPDATE", [run.pk]), (_end_sql(done_sets), params)])
    except DatabaseError:
        return False, None  # the general path meets the same refusal and handles it
    assert row is not None
    written, taken = row[0], row[1:]
    if not written:
        return False, None
    send_on_commit(run.pk, log.pending)
    if taken[0] is None:
        return True, None
    following = build_model(StepAttempt, attempt_columns(), list(taken))
    withdraw_job(following.pk, following.queue)  # its job would only find it taken
    return True, Claim(attempt=following, run=run, definition=claim.definition, token=taking["claim_token"],
                       worker=claim.worker)


@cache
def _end_sql(done_sets: str) -> str:
    """Ends the branch (when the gate lets it), then takes the run's next scheduled branch step
    on this worker's queue that nothing holds back (``claim_deadline_seconds`` set as it was
    scheduled: ``attempts.claim_deadline``), if the worker may go on: the step's job is
    still queued, so whichever worker is free first runs it, here without the trip through RQ.

    It takes the newest such step, the one whose job is last in the queue: the other workers
    dequeue from the front, so the two meet only in the middle. Taking the oldest, a worker can
    take the very step whose job another worker has just dequeued: that worker's claim waits
    for this statement's commit, finds the step taken, dequeues the next job and can meet this
    worker again (seen once in about 30 fan-outs of 100: one worker ran 65 branches, the other
    started 114 ms in)."""
    columns = ", ".join(f"t.{connection.ops.quote_name(f.column)}" for f in attempt_columns())
    event_columns = columns_of(Event, skip=("id", "attempt_id"))
    event_list = event_columns.split(", ")
    # The taken step's claim, logged after the branch's end: its state's name is the step's.
    claimed = ", ".join("t.state_name" if c == '"state_name"' else f"c.{c}" for c in event_list)
    return f"""
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
            WHERE id = %s AND EXISTS (SELECT 1 FROM gate) AND %s  -- nothing to charge: no new row version
        ), pick AS (
            SELECT p.id FROM {ATTEMPT} p
            WHERE %s AND EXISTS (SELECT 1 FROM gate) AND p.run_id = %s AND p.status = 'scheduled'
              AND p.kind = 'step' AND p.queue = %s AND p.not_before IS NULL AND p.line_id IS NOT NULL
              AND p.claim_deadline_seconds IS NOT NULL
            ORDER BY p.id DESC LIMIT 1 FOR UPDATE SKIP LOCKED
        ), taken AS (
            UPDATE {ATTEMPT} t SET status = 'running', claim_token = %s::uuid, worker = %s,
                claimed_at = %s::timestamptz, lease_expires_at = %s::timestamptz,
                timeout_at = %s::timestamptz + make_interval(secs => t.claim_deadline_seconds)
            WHERE t.id = (SELECT id FROM pick) RETURNING {columns}
        ), events AS (
            INSERT INTO {EVENT} ({event_columns}, attempt_id)
            SELECT {event_columns}, attempt_id FROM (
                SELECT {", ".join(f"e.{c}" for c in event_list)}, e.attempt_id, e.ordinality AS position
                FROM ROWS FROM (jsonb_populate_recordset(NULL::{EVENT}, %s::jsonb)) WITH ORDINALITY e, gate
                UNION ALL
                SELECT {claimed}, t.id, 0 FROM jsonb_populate_record(NULL::{EVENT}, %s::jsonb) c, taken t
            ) logged ORDER BY position = 0, position
        )
        SELECT (SELECT count(*) FROM gate), taken.* FROM (SELECT 1) one LEFT JOIN taken ON true
    """
