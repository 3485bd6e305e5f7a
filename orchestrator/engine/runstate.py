"""Run status transitions: the one place a run's status changes.

Each function is one transition: it checks the source status (an InvalidTransition names
what was refused), sets the status and appends the transition's event. All of them run
inside the caller's transaction, with the run's row locked (``transitions.lock_run``).

    running ──> paused ──> running                  (an operator decided an uncertain effect)
       │          │
       ├──────────┴──> compensating ──> failed      (saga: undo confirmed effects, newest first)
       │                  │    ^
       │                  v    │
       │               paused ─┘                    (a compensation failed: retry, done, accept)
       ├──> succeeded
       ├──> cancelled (also from waiting and paused)
       └──> compensating ──> compensated           (cancel and compensate: the saga, then the end)
    failed ──> running                              (redrive)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from ..conf import ratchet_setting
from ..models import (
    ApprovalRequest,
    ApprovalStatus,
    AttemptKind,
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    PauseReason,
    Run,
    RunStatus,
    StepAttempt,
)
from ..models.runs import ACTIVE_ATTEMPT_STATUSES
from . import clock, ledger
from .attempts import new_attempt
from .errors import InvalidTransition, engine_error
from .eventlog import EventLog
from .fingerprints import fingerprint

RUN_FIELDS = [
    "status", "output", "error", "failure_mode", "failed_attempt", "pause_reason", "finished_at",
    "deadline_at", "steps_used", "tokens_used", "depth_used", "cost_used", "resume_count", "redrive_count",
    "human_wait_seconds", "failure_state", "failure_fingerprint",
]
S = RunStatus


def save_run(run: Run) -> None:
    """Write the run's row and the context entries its transition added (not its whole context)."""
    run.save(update_fields=RUN_FIELDS)


def _move(run: Run, to: str, allowed_from: tuple[str, ...]) -> None:
    assert connection.in_atomic_block, "run transitions run inside the caller's transaction"
    if run.status not in allowed_from:
        raise InvalidTransition(f"a {run.status} run cannot become {to}")
    run.status = to


def is_failing(run: Run) -> bool:
    """A run whose failure is decided and whose saga is under way (compensating, or paused on it)."""
    paused_saga = run.status == S.PAUSED and run.pause_reason == PauseReason.COMPENSATION_FAILED
    return run.status == S.COMPENSATING or paused_saga


def stop_active_attempts(run: Run, log: EventLog, reason: str) -> list[StepAttempt]:
    """Fence every active attempt (a worker still running one will have its result discarded)
    and stop every line of execution still under way."""
    Line.objects.filter(run=run, status__in=(LineStatus.RUNNING, LineStatus.PAUSED)).update(
        status=LineStatus.CANCELLED, finished_at=clock.now())
    Fork.objects.filter(run=run, status=ForkStatus.OPEN).update(status=ForkStatus.CANCELLED)
    active = list(run.attempts.filter(status__in=ACTIVE_ATTEMPT_STATUSES))
    if active:
        release_waiting(active, reason, log)
        StepAttempt.objects.filter(pk__in=[a.pk for a in active], status__in=ACTIVE_ATTEMPT_STATUSES).update(
            status=AttemptStatus.CANCELLED, finished_at=clock.now(), lease_expires_at=None
        )
        for attempt in active:
            log.add(EventKind.STEP_FAILED, attempt, reason=reason, status=AttemptStatus.CANCELLED)
    return active


def release_waiting(attempts: list[StepAttempt], reason: str, log: EventLog) -> None:
    """What these (waiting) attempts wait on stops with them: their pending approval requests
    are withdrawn, and the child runs they started are cancelled (a child belongs to its
    parent). The caller holds the parent's lock; each child's is taken after it (the lock
    order of children.py), and a child cancels its own children the same way."""
    waiting = [a.pk for a in attempts if a.status == AttemptStatus.WAITING]
    if not waiting:
        return
    withdrawn = ApprovalRequest.objects.filter(attempt_id__in=waiting, status=ApprovalStatus.PENDING)
    for request_id, state_name in withdrawn.values_list("pk", "state_name"):
        log.add(EventKind.APPROVAL_CANCELLED, state_name=state_name, request=request_id, reason=reason)
    withdrawn.update(status=ApprovalStatus.CANCELLED, decided_at=clock.now())
    ids = Run.objects.filter(parent_attempt_id__in=waiting, status__in=CANCELLABLE).order_by("pk")
    for child_id in ids.values_list("pk", flat=True):
        child = Run.objects.select_for_update(no_key=True).get(pk=child_id)
        if child.status not in CANCELLABLE:
            continue
        child_log = EventLog(child)
        cancel(child, child_log, f"its parent run stopped: {reason}")
        save_run(child)
        child_log.flush()


def succeed_run(run: Run, log: EventLog, *, output: Any, state_name: str = "") -> None:
    _move(run, S.SUCCEEDED, (S.RUNNING,))
    run.output = output
    run.finished_at = clock.now()
    log.add(EventKind.RUN_SUCCEEDED, state_name=state_name)
    _tell_parent(run)


def _tell_parent(run: Run) -> None:
    """A child run ended: its parent's waiting attempt settles once this transaction commits."""
    if run.parent_id is not None:
        from .children import settle_soon  # children builds on this module

        settle_soon(run.pk)


CANCELLABLE = (S.RUNNING, S.WAITING, S.PAUSED)


def cancel(run: Run, log: EventLog, reason: str) -> None:
    _move(run, S.CANCELLED, CANCELLABLE)
    stop_active_attempts(run, log, "run cancelled")
    run.failure_mode = "cancelled"
    run.error = engine_error("Cancelled", reason or "cancelled by an operator")
    run.pause_reason = ""
    run.finished_at = clock.now()
    log.add(EventKind.RUN_CANCELLED, **({"reason": reason} if reason else {}))
    _tell_parent(run)


def cancel_and_compensate(run: Run, log: EventLog, reason: str) -> None:
    """An operator cancels the run and has its confirmed effects undone, newest first, each
    compensation a durable attempt with retries; the run ends ``compensated`` (or pauses on a
    compensation that failed, for an operator to retry or mark done)."""
    _move(run, S.COMPENSATING, CANCELLABLE)
    stop_active_attempts(run, log, "run cancelled")
    run.failure_mode = "cancelled"
    run.error = engine_error("Cancelled", reason or "cancelled by an operator")
    run.pause_reason = ""
    run.deadline_at = clock.now() + timedelta(seconds=ratchet_setting("COMPENSATION_DEADLINE_SECONDS"))
    log.add(EventKind.RUN_CANCELLED, compensate=True, **({"reason": reason} if reason else {}))
    if schedule_next_compensation(run, log):
        log.add(EventKind.COMPENSATION_STARTED, failure_mode=run.failure_mode)
    else:
        _end_failed(run, log)


def fail_run(run: Run, log: EventLog, error: dict[str, Any], failure_mode: str, state_name: str = "",
             cause: StepAttempt | None = None) -> None:
    """The run fails: stop what is active, then undo its confirmed effects (saga), then end.

    ``cause`` is the attempt whose failure failed the run (a redrive restarts its visit).
    The saga gets a deadline of its own, so a run failed by its deadline can still compensate.
    """
    _move(run, S.COMPENSATING, (S.RUNNING, S.WAITING, S.PAUSED))
    run.error = error
    run.failure_mode = failure_mode
    run.pause_reason = ""
    stopped = stop_active_attempts(run, log, "run failed")
    if cause is None:  # a deadline or a budget: the step that was under way is the one to redo
        cause = next((a for a in stopped if a.kind == AttemptKind.STEP), None)
    run.failed_attempt = cause
    run.failure_state = state_name or (cause.state_name if cause is not None else "")
    run.failure_fingerprint = fingerprint(error, run.failure_state)
    run.deadline_at = clock.now() + timedelta(seconds=ratchet_setting("COMPENSATION_DEADLINE_SECONDS"))
    if schedule_next_compensation(run, log):
        log.add(EventKind.COMPENSATION_STARTED, state_name=state_name, failure_mode=failure_mode)
    else:
        _end_failed(run, log, state_name)


def _end_failed(run: Run, log: EventLog, state_name: str = "") -> None:
    """The saga is over: a failed run ends failed; a run an operator cancelled to compensate
    ends compensated when nothing is left undone (else cancelled: an effect was accepted as is)."""
    run.finished_at = clock.now()
    if run.failure_mode == "cancelled":
        left = owned_effects(run).filter(status__in=(EffectStatus.CONFIRMED, EffectStatus.COMPENSATION_FAILED)) \
            .exclude(compensate="").count()
        _move(run, S.CANCELLED if left else S.COMPENSATED, (S.COMPENSATING,))
        log.add(EventKind.RUN_COMPENSATED if not left else EventKind.RUN_CANCELLED, not_undone=left)
    else:
        _move(run, S.FAILED, (S.COMPENSATING,))
        log.add(EventKind.RUN_FAILED, state_name=state_name, failure_mode=run.failure_mode, error=run.error)
    _tell_parent(run)


def pause_run(run: Run, log: EventLog, reason: str, attempt: StepAttempt | None = None, **data: Any) -> None:
    """Wait for an operator: an uncertain effect (running runs) or a failed compensation (failing runs)."""
    _move(run, S.PAUSED, (S.RUNNING,) if reason == PauseReason.UNCERTAIN_EFFECT else (S.COMPENSATING,))
    run.pause_reason = reason
    log.add(EventKind.RUN_PAUSED, attempt, reason=reason, **data)


def resume_run(run: Run, log: EventLog, attempt: StepAttempt | None = None, **data: Any) -> None:
    """An operator decided: the run goes on (or its saga does), and the pause counts as human wait."""
    failing = is_failing(run)
    _move(run, S.COMPENSATING if failing else S.RUNNING, (S.PAUSED,))
    paused = Event.objects.filter(run=run, kind=EventKind.RUN_PAUSED).order_by("-id").first()
    if paused is not None:
        run.human_wait_seconds += max((clock.now() - paused.created_at).total_seconds(), 0.0)
    run.pause_reason = ""
    log.add(EventKind.RUN_RESUMED, attempt, **data)


def redrive(run: Run, log: EventLog, attempt: StepAttempt, reason: str = "") -> None:
    _move(run, S.RUNNING, (S.FAILED,))
    # When it had failed: figures rolled up by finish time (monitoring's KPI rollups) know the
    # run left that hour.
    failed_at = run.finished_at.isoformat() if run.finished_at else None
    run.error = None
    run.failure_mode = ""
    run.failed_attempt = None
    run.finished_at = None
    run.redrive_count += 1
    log.add(EventKind.RUN_REDRIVEN, attempt, redrive=run.redrive_count, failed_at=failed_at,
            **({"reason": reason} if reason else {}))


def owned_effects(run: Run) -> QuerySet[Effect]:
    """The effects a run's saga answers for: its own, and those of the child runs it started."""
    return Effect.objects.filter(Q(run=run) | Q(run__parent=run))


def schedule_next_compensation(run: Run, log: EventLog) -> bool:
    """Schedule the compensation of the most recent confirmed effect not yet undone.

    Compensations run one at a time, most recent first, each a durable attempt of its own on
    the queue of the step that made the effect. Returns False when nothing is left to undo.
    """
    effect = (
        owned_effects(run).filter(status=EffectStatus.CONFIRMED)
        .exclude(compensate="")
        .order_by("-confirmed_at", "-id")
        .first()
    )
    if effect is None:
        return False
    ledger.start_compensation(effect)
    compensate_effect(run, effect, log, sequence=0)
    return True


def compensate_effect(run: Run, effect: Effect, log: EventLog, *, sequence: int) -> StepAttempt:
    """A compensation attempt for ``effect``; ``sequence`` counts operator retries (fresh retry budget)."""
    return new_attempt(run, log, state_name=effect.state_name, sequence=sequence, queue=effect.queue,
                       input=effect.result, kind=AttemptKind.COMPENSATION, effect_id=effect.pk)


def finish_compensation(run: Run, effect: Effect, log: EventLog, *, ok: bool, error: Any = None,
                        attempt: StepAttempt | None = None) -> None:
    """One compensation ended: go on with the saga, or (it failed) pause for an operator."""
    if ok:
        ledger.end_compensation(effect, log, ok=True)
        continue_saga(run, log)
        return
    ledger.end_compensation(effect, log, ok=False, error=error)
    pause_run(run, log, PauseReason.COMPENSATION_FAILED, attempt, key=effect.key, effect=effect.pk)


def continue_saga(run: Run, log: EventLog) -> None:
    if not schedule_next_compensation(run, log):
        _end_failed(run, log)


def end_saga_past_deadline(run: Run, log: EventLog) -> None:
    """The saga ran past its own deadline: what is left undone is marked so, and the run ends."""
    stop_active_attempts(run, log, "compensation deadline passed")
    left = owned_effects(run).filter(status__in=(EffectStatus.CONFIRMED, EffectStatus.COMPENSATING,
                                                      EffectStatus.COMPENSATION_FAILED)).exclude(compensate="")
    for effect in left:
        ledger.end_compensation(effect, log, ok=False, force=True,
                                error=engine_error("CompensationNotDone", "the run's compensation deadline passed"))
    if run.status == S.PAUSED:
        resume_run(run, log, reason="compensation deadline passed")
    _end_failed(run, log)
