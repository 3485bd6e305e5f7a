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
from .dispatch import dispatch_on_commit
from .eventlog import EventLog
from .ratelimits import limit_for
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


def new_attempt(
    run: Run,
    log: EventLog,
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
) -> StepAttempt:
    """Create an attempt: scheduled and dispatched on commit, or claimed by ``claimant`` now."""
    now = clock.now()
    not_before = now + timedelta(seconds=delay) if delay > 0 else None
    attempt = StepAttempt(
        run=run, kind=kind, state_name=state_name, sequence=sequence, attempt=attempt_no, queue=queue,
        input=input, effect_id=effect_id, resumed_from=resumed_from, scheduled_at=now, not_before=not_before,
        branch_path=branch_path, line=line,
    )
    # A rate-limited or breaker-guarded step goes through claim_attempt, where those are checked.
    inline = (claimant is not None and not_before is None and claimant.may_take(queue)
              and limit_for(state) is None and breaker_for(state) is None and not has_guarded_tools(state))
    if inline:
        lease = ratchet_setting("LEASE_SECONDS")
        attempt.status = AttemptStatus.RUNNING
        attempt.claim_token = uuid.uuid4()
        attempt.worker = claimant.worker
        attempt.claimed_at = now
        attempt.lease_expires_at = now + timedelta(seconds=lease)
        attempt.timeout_at = now + timedelta(seconds=first_deadline(state))
    elif not_before is None:
        attempt.dispatched_at = now
        attempt.dispatch_count = 1
    else:  # a timer or a backoff: the sweeper dispatches it when it is due
        transaction.on_commit(clock.timers_changed.set)
    attempt.save()
    log.add(EventKind.STEP_SCHEDULED, attempt, sequence=sequence, attempt_number=attempt_no,
            delay_seconds=round(delay, 3), inline=inline)
    if inline:
        log.add(EventKind.STEP_CLAIMED, attempt, worker=claimant.worker, inline=True)
    elif not_before is None:
        dispatch_on_commit(attempt.pk, queue)
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
