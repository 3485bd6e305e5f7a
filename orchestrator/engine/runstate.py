"""Run-level endings: succeed, fail (with saga compensation), cancel. Inside a transaction."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from ..models import (
    AttemptKind,
    AttemptStatus,
    Effect,
    EffectStatus,
    EventKind,
    Run,
    RunStatus,
    StepAttempt,
)
from ..models.runs import ACTIVE_ATTEMPT_STATUSES
from .attempts import new_attempt
from .eventlog import EventLog

RUN_FIELDS = [
    "status", "context", "output", "error", "failure_mode", "finished_at", "deadline_at", "steps_used",
    "tokens_used", "cost_used", "resume_count", "redrive_count", "human_wait_seconds",
]


def save_run(run: Run) -> None:
    run.save(update_fields=RUN_FIELDS)


def stop_active_attempts(run: Run, log: EventLog, reason: str) -> None:
    """Fence every active attempt: a worker still running one will have its result discarded."""
    active = list(run.attempts.filter(status__in=ACTIVE_ATTEMPT_STATUSES))
    if active:
        StepAttempt.objects.filter(pk__in=[a.pk for a in active]).update(
            status=AttemptStatus.CANCELLED, finished_at=timezone.now(), lease_expires_at=None
        )
        for attempt in active:
            log.add(EventKind.STEP_FAILED, attempt, reason=reason, status=AttemptStatus.CANCELLED)


def finish_run(run: Run, log: EventLog, status: str, *, output: Any = None, state_name: str = "") -> None:
    assert connection.in_atomic_block
    run.status = status
    run.finished_at = timezone.now()
    if status == RunStatus.SUCCEEDED:
        run.output = output
        log.add(EventKind.RUN_SUCCEEDED, state_name=state_name)
    elif status == RunStatus.FAILED:
        log.add(EventKind.RUN_FAILED, state_name=state_name, failure_mode=run.failure_mode,
                error=run.error)
    elif status == RunStatus.CANCELLED:
        log.add(EventKind.RUN_CANCELLED, state_name=state_name)


def fail_run(run: Run, log: EventLog, error: dict[str, Any], failure_mode: str, state_name: str = "") -> None:
    """The run fails: stop what is active, then undo its confirmed effects (saga), then end."""
    run.error = error
    run.failure_mode = failure_mode
    stop_active_attempts(run, log, "run failed")
    run.status = RunStatus.COMPENSATING
    if schedule_next_compensation(run, log):
        log.add(EventKind.COMPENSATION_STARTED, state_name=state_name, failure_mode=failure_mode)
    else:
        finish_run(run, log, RunStatus.FAILED, state_name=state_name)


def schedule_next_compensation(run: Run, log: EventLog) -> bool:
    """Schedule the compensation of the most recent confirmed effect not yet undone.

    Compensations run one at a time, most recent first, each a durable attempt of its own.
    Returns False when nothing is left to compensate.
    """
    effect = (
        Effect.objects.filter(run=run, status=EffectStatus.CONFIRMED)
        .exclude(compensate="")
        .order_by("-confirmed_at", "-id")
        .first()
    )
    if effect is None:
        return False
    Effect.objects.filter(pk=effect.pk).update(status=EffectStatus.COMPENSATING)
    new_attempt(run, log, state_name=effect.state_name, sequence=0, queue="default",
                input=effect.result, kind=AttemptKind.COMPENSATION, effect_id=effect.pk)
    return True


def finish_compensation(run: Run, effect: Effect, log: EventLog, *, ok: bool, error: Any = None) -> None:
    """One compensation ended; schedule the next or end the run as failed."""
    now = timezone.now()
    if ok:
        Effect.objects.filter(pk=effect.pk).update(status=EffectStatus.COMPENSATED, compensated_at=now)
        log.add(EventKind.COMPENSATION_DONE, state_name=effect.state_name, key=effect.key)
    else:
        Effect.objects.filter(pk=effect.pk).update(status=EffectStatus.COMPENSATION_FAILED, error=error)
        log.add(EventKind.COMPENSATION_FAILED, state_name=effect.state_name, key=effect.key, error=error)
    if not schedule_next_compensation(run, log):
        finish_run(run, log, RunStatus.FAILED)

