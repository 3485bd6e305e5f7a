"""Creating step attempts: scheduled and dispatched on commit, or claimed inline."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction

from ..conf import ratchet_setting
from ..models import AttemptKind, AttemptStatus, EventKind, Run, StepAttempt
from . import clock
from .breakers import breaker_for
from .claims import Claimant
from .definition import State
from .dispatch import dispatch_many_on_commit, dispatch_on_commit
from .eventlog import EventLog
from .ratelimits import limit_for
from .rows import bulk_insert
from .tool_guards import has_guarded_tools


def step_timeout(state: State | None) -> float:
    """The hard limit on one attempt of ``state``, in seconds."""
    if state is not None and state.timeout_seconds:
        return float(state.timeout_seconds)
    return ratchet_setting("DEFAULT_STEP_TIMEOUT_SECONDS")


def first_deadline(state: State | None) -> float:
    """Seconds from claim to the attempt's first deadline: its timeout, or sooner its first
    heartbeat when the state asks for heartbeats (each heartbeat moves it forward)."""
    timeout = step_timeout(state)
    if state is not None and state.heartbeat_seconds:
        return min(timeout, float(state.heartbeat_seconds))
    return timeout


class AttemptBatch:
    """Attempts created together (a fork's branches): inserted in one statement and enqueued in
    one Redis round trip, instead of an INSERT and an enqueue each. ``save`` before the
    transition's events are flushed: they refer to these attempts."""

    def __init__(self) -> None:
        self.attempts: list[StepAttempt] = []

    def save(self) -> None:
        if not self.attempts:
            return
        bulk_insert(self.attempts)
        dispatch_many_on_commit([(a.pk, a.queue) for a in self.attempts if a.dispatched_at is not None])
        self.attempts = []


def claim_fields(worker: str, state: State | None, now: Any) -> dict[str, Any]:
    """What a claim writes on an attempt: running, a fresh token, this worker, a full lease."""
    return {
        "status": AttemptStatus.RUNNING, "claim_token": uuid.uuid4(), "worker": worker, "claimed_at": now,
        "lease_expires_at": now + timedelta(seconds=ratchet_setting("LEASE_SECONDS")),
        "timeout_at": now + timedelta(seconds=first_deadline(state)),
    }


def may_claim_inline(state: State | None) -> bool:
    """Nothing to check at claim time: no rate limit, no circuit breaker, no guarded tools."""
    return limit_for(state) is None and breaker_for(state) is None and not has_guarded_tools(state)


def claim_deadline(state: State | None) -> float | None:
    """Seconds from a claim to the first deadline of a step of ``state`` that may be claimed with
    nothing to check (a task or an agent, ``may_claim_inline``); None when the claim must check.
    Recorded on the attempt as it is scheduled (``claim_deadline_seconds``), so the statements
    that claim a step they find themselves (claim_read, fast_branch) need not read its state."""
    if state is None or state.type not in ("task", "agent") or not may_claim_inline(state):
        return None
    return first_deadline(state)


def build_attempt(
    run: Run,
    *,
    state_name: str,
    sequence: int,
    queue: str,
    attempt_no: int = 1,
    input: Any = None,
    delay: float = 0.0,
    kind: str = AttemptKind.STEP,
    effect_id: int | None = None,
    resumed_from: StepAttempt | None = None,
    claimant: Claimant | None = None,
    state: State | None = None,
    branch_path: str = "",
    line: Any = None,
) -> tuple[StepAttempt, bool]:
    """An unsaved attempt, and whether ``claimant`` claimed it (inline: same queue, due now,
    and nothing to check at claim time)."""
    now = clock.now()
    not_before = now + timedelta(seconds=delay) if delay > 0 else None
    attempt = StepAttempt(
        run=run, kind=kind, state_name=state_name, sequence=sequence, attempt=attempt_no, queue=queue,
        input=input, effect_id=effect_id, resumed_from=resumed_from, scheduled_at=now, not_before=not_before,
        branch_path=branch_path, line=line,
    )
    # A rate-limited or breaker-guarded step goes through claim_attempt, where those are checked;
    # any other task's job claims it in the statement that reads it (claim_read.read_for_claim).
    if kind == AttemptKind.STEP:
        attempt.claim_deadline_seconds = claim_deadline(state)
    inline = claimant is not None and not_before is None and claimant.may_take(queue) and may_claim_inline(state)
    if inline:
        for name, value in claim_fields(claimant.worker, state, now).items():  # type: ignore[union-attr]
            setattr(attempt, name, value)
    elif not_before is None:
        attempt.dispatched_at = now
        attempt.dispatch_count = 1
    return attempt, inline


def log_scheduled(log: EventLog, attempt: StepAttempt, inline: bool, delay: float = 0.0) -> None:
    log.add(EventKind.STEP_SCHEDULED, attempt, sequence=attempt.sequence, attempt_number=attempt.attempt,
            delay_seconds=round(delay, 3), inline=inline)
    if inline:
        log.add(EventKind.STEP_CLAIMED, attempt, worker=attempt.worker, inline=True)


def new_attempt(
    run: Run,
    log: EventLog,
    *,
    delay: float = 0.0,
    batch: AttemptBatch | None = None,
    **fields: Any,
) -> StepAttempt:
    """Create an attempt (``build_attempt``'s fields): scheduled and dispatched on commit, or
    claimed by ``claimant`` now. With a ``batch``, one not claimed inline is saved and
    dispatched by the batch."""
    attempt, inline = build_attempt(run, delay=delay, **fields)
    if attempt.not_before is not None:  # a timer or a backoff: the sweeper dispatches it when it is due
        transaction.on_commit(clock.timers_changed.set)
    batched = batch is not None and not inline
    if batched:
        batch.attempts.append(attempt)
    else:
        attempt.save()
    log_scheduled(log, attempt, inline, delay)
    if attempt.dispatched_at is not None and not batched:
        dispatch_on_commit(attempt.pk, attempt.queue)
    return attempt


def retry_attempt(
    run: Run,
    previous: StepAttempt,
    log: EventLog,
    *,
    delay: float = 0.0,
    resumed: bool = False,
) -> StepAttempt:
    """Another try of the same visit: same state, same input, next attempt number."""
    return new_attempt(
        run, log, state_name=previous.state_name, sequence=previous.sequence, queue=previous.queue,
        attempt_no=previous.attempt + 1, input=previous.input, delay=delay, kind=previous.kind,
        effect_id=previous.effect_id, resumed_from=previous if resumed else None,
        branch_path=previous.branch_path, line=previous.line,
    )
