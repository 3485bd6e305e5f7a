"""Operations people and programs call: start, cancel, redrive, decide an uncertain effect.

Views, commands and the API call these; none of them changes run state by itself.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import (
    AttemptKind,
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    FailureMode,
    Run,
    RunStatus,
    Workflow,
)
from .attempts import retry_attempt
from .definition import definition_for_version
from .errors import InvalidTransition, WorkflowNotFound, engine_error
from .eventlog import EventLog
from .runstate import fail_run, finish_run, save_run, stop_active_attempts
from .scheduling import enter_state
from .transitions import lock_run

CANCELLABLE = (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED)


def start_run(
    workflow: Workflow | str,
    input: Any = None,
    *,
    idempotency_key: str | None = None,
    user: Any = None,
) -> tuple[Run, bool]:
    """Start a run of the workflow's latest version. Returns (run, created).

    A repeated idempotency key returns the run the first request started.
    """
    if isinstance(workflow, str):
        try:
            workflow = Workflow.objects.get(name=workflow)
        except Workflow.DoesNotExist:
            raise WorkflowNotFound(f"no workflow named {workflow!r}") from None
    if idempotency_key:
        existing = Run.objects.filter(workflow=workflow, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    version = workflow.latest_version()
    if version is None:
        raise WorkflowNotFound(f"workflow {workflow.name!r} has no published version; publish one first")
    definition = definition_for_version(version)
    input = {} if input is None else input
    try:
        with transaction.atomic():
            now = timezone.now()
            run = Run.objects.create(
                workflow=workflow, version=version, input=input, context={"input": input},
                idempotency_key=idempotency_key or None, started_by=user if getattr(user, "pk", None) else None,
                deadline_at=now + timedelta(seconds=definition.timeout_seconds) if definition.timeout_seconds else None,
            )
            log = EventLog(run, actor=run.started_by)
            log.add(EventKind.RUN_STARTED, version=version.number, idempotency_key=idempotency_key or "")
            enter_state(run, definition, definition.start_at, log)
            save_run(run)
            log.flush()
    except IntegrityError:
        if idempotency_key:
            return Run.objects.get(workflow=workflow, idempotency_key=idempotency_key), False
        raise
    return run, True


def cancel_run(run_id: Any, user: Any = None, reason: str = "") -> Run:
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status not in CANCELLABLE:
            raise InvalidTransition(f"a {run.status} run cannot be cancelled")
        log = EventLog(run, actor=user)
        stop_active_attempts(run, log, "run cancelled")
        run.failure_mode = FailureMode.CANCELLED
        run.error = engine_error("Cancelled", reason or "cancelled by an operator")
        finish_run(run, log, RunStatus.CANCELLED)
        save_run(run)
        log.flush()
    return run


def redrive_run(run_id: Any, user: Any = None) -> Run:
    """Restart a failed run from its failed step, keeping every completed checkpoint."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.FAILED:
            raise InvalidTransition(f"only failed runs can be redriven; this one is {run.status}")
        if run.effects.filter(status=EffectStatus.COMPENSATED).exists():
            raise InvalidTransition("this run's effects were compensated; start a new run instead")
        failed = (
            run.attempts.filter(kind=AttemptKind.STEP)
            .filter(status__in=(AttemptStatus.FAILED, AttemptStatus.TIMED_OUT, AttemptStatus.LOST,
                                AttemptStatus.CANCELLED))
            .order_by("-id").first()
        )
        if failed is None:
            raise InvalidTransition(
                "the run failed without a failed step (a fail state or a budget); redriving would fail again"
            )
        definition = definition_for_version(run.version)
        log = EventLog(run, actor=user)
        run.status = RunStatus.RUNNING
        run.error = None
        run.failure_mode = ""
        run.finished_at = None
        run.redrive_count += 1
        if definition.timeout_seconds:
            run.deadline_at = timezone.now() + timedelta(seconds=definition.timeout_seconds)
        log.add(EventKind.RUN_REDRIVEN, failed, redrive=run.redrive_count)
        enter_state(run, definition, failed.state_name, log)
        save_run(run)
        log.flush()
    return run


DECISIONS = ("happened", "retry", "compensate")


def decide_effect(effect_id: int, decision: str, user: Any = None, result: Any = None) -> Effect:
    """An operator's answer for an uncertain effect, which resumes (or ends) its paused run."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    with transaction.atomic():
        effect = Effect.objects.get(pk=effect_id)
        run = lock_run(effect.run_id)
        effect.refresh_from_db()
        if effect.status != EffectStatus.UNCERTAIN or run.status != RunStatus.PAUSED:
            raise InvalidTransition(f"effect {effect.key!r} is {effect.status}; nothing to decide")
        log = EventLog(run, actor=user)
        now = timezone.now()
        paused = Event.objects.filter(run=run, kind=EventKind.RUN_PAUSED).order_by("-id").first()
        if paused:
            run.human_wait_seconds += (now - paused.created_at).total_seconds()
        effect.decided_by = user if getattr(user, "pk", None) else None
        if decision == "retry":
            effect.status = EffectStatus.RETRY_APPROVED
        else:
            effect.status = EffectStatus.CONFIRMED
            effect.result = result
            effect.confirmed_at = now
        effect.save(update_fields=["status", "result", "confirmed_at", "decided_by"])
        log.add(EventKind.EFFECT_DECIDED, state_name=effect.state_name, key=effect.key, decision=decision)
        last = run.attempts.filter(kind=AttemptKind.STEP, state_name=effect.state_name).order_by("-id").first()
        run.status = RunStatus.RUNNING
        log.add(EventKind.RUN_RESUMED, last, decision=decision)
        if decision == "compensate":
            error = engine_error("EffectCompensated", f"operator chose to compensate uncertain effect {effect.key!r}")
            fail_run(run, log, error, FailureMode.DUPLICATE_SIDE_EFFECT, state_name=effect.state_name)
        else:
            retry_attempt(run, last, log)
        save_run(run)
        log.flush()
    return effect

