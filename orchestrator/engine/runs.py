"""Operations people and programs call: start, cancel, redrive, decide an uncertain effect.

Views, commands and the API call these; none of them changes run state by itself.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from ..models import (
    AttemptKind,
    AuditAction,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    FailureMode,
    Line,
    LineStatus,
    PauseReason,
    Run,
    RunStatus,
    StepAttempt,
    Workflow,
)
from . import audit, clock, ledger, runstate
from .attempts import retry_attempt
from .budgets import run_deadline
from .contracts import check_run_input
from .definition import definition_for_version
from .errors import InvalidTransition, WorkflowNotFound, engine_error
from .eventlog import EventLog
from .reopen import reopen_branches
from .runstate import CANCELLABLE, fail_run, save_run
from .scheduling import enter_state
from .storable import ensure_storable
from .transitions import lock_run


def start_run(
    workflow: Workflow | str,
    input: Any = None,
    *,
    idempotency_key: str | None = None,
    user: Any = None,
    version: int | None = None,
) -> tuple[Run, bool]:
    """Start a run of the workflow's latest version (or of version number ``version``). Returns
    (run, created).

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
    pinned = workflow.versions.filter(number=version).first() if version is not None else workflow.latest_version()
    if pinned is None:
        raise WorkflowNotFound(f"workflow {workflow.name!r} has no version {version}" if version is not None
                               else f"workflow {workflow.name!r} has no published version; publish one first")
    definition = definition_for_version(pinned)
    input = {} if input is None else input
    ensure_storable(input, "the run's input")
    check_run_input(definition, input)
    try:
        with transaction.atomic():
            now = clock.now()
            run = Run.objects.create(
                workflow=workflow, version=pinned, input=input, context={"input": input},
                idempotency_key=idempotency_key or None, started_by=user if getattr(user, "pk", None) else None,
                deadline_at=run_deadline(definition, now),
            )
            log = EventLog(run, actor=run.started_by)
            log.add(EventKind.RUN_STARTED, version=pinned.number, idempotency_key=idempotency_key or "")
            enter_state(run, definition, definition.start_at, log)
            save_run(run)
            log.flush()
            audit.record(AuditAction.START, user, run=run,
                         detail={"version": pinned.number, "idempotency_key": idempotency_key or ""})
    except IntegrityError:
        if idempotency_key:
            return Run.objects.get(workflow=workflow, idempotency_key=idempotency_key), False
        raise
    return run, True


def cancel_run(run_id: Any, user: Any = None, reason: str = "", *, compensate: bool = False) -> Run:
    """Cancel a run; with ``compensate``, its confirmed effects are undone first (saga)."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status not in CANCELLABLE:
            raise InvalidTransition(f"a {run.status} run cannot be cancelled")
        log = EventLog(run, actor=user)
        if compensate:
            runstate.cancel_and_compensate(run, log, reason)
        else:
            runstate.cancel(run, log, reason)
        save_run(run)
        log.flush()
        audit.record(AuditAction.COMPENSATE if compensate else AuditAction.CANCEL, user, run=run,
                     detail={"reason": reason})
    return run


def redrive_run(run_id: Any, user: Any = None, reason: str = "") -> Run:
    """Restart a failed run from the visit whose failure failed it, keeping every completed
    checkpoint: a new attempt of that same visit, so the step's effects are deduplicated.
    Inside branches, every branch the failure stopped runs again from where it stopped
    (reopen.py); branches that succeeded keep their outputs."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.FAILED:
            raise InvalidTransition(f"only failed runs can be redriven; this one is {run.status}")
        if run.effects.filter(status=EffectStatus.COMPENSATED).exists():
            raise InvalidTransition("this run's effects were compensated; start a new run instead")
        if run.failure_mode == FailureMode.COST_EXPLOSION:
            raise InvalidTransition("the run used up its budget; redriving would exceed it again "
                                    "(publish a version with a larger budget and start a new run)")
        failed = run.failed_attempt
        if failed is None:
            raise InvalidTransition(
                f"the run ended in {run.failure_mode or 'a fail state'} without a failed step "
                "(a fail state, or a budget used up before a step); redriving would fail again"
            )
        definition = definition_for_version(run.version)
        log = EventLog(run, actor=user)
        runstate.redrive(run, log, failed, reason)
        run.deadline_at = run_deadline(definition, clock.now())
        if failed.line_id is None:
            retry_attempt(run, failed, log)
        else:
            reopen_branches(run, definition, failed, log)
        save_run(run)
        log.flush()
        audit.record(AuditAction.REDRIVE, user, run=run, detail={"reason": reason, "state": failed.state_name})
    return run


UNCERTAIN_DECISIONS = ("happened", "retry", "compensate")
COMPENSATION_DECISIONS = ("retry", "done", "accept")
DECISIONS = tuple(dict.fromkeys(UNCERTAIN_DECISIONS + COMPENSATION_DECISIONS))


def decide_effect(effect_id: int, decision: str, user: Any = None, result: Any = None) -> Effect:
    """An operator's answer for a paused run's effect, which resumes the run (or its saga).

    Uncertain effect: ``happened`` (with the result seen downstream), ``retry`` (it did not
    happen) or ``compensate`` (it happened: fail the run and undo it). Failed compensation:
    ``retry`` it, ``done`` (undone by hand) or ``accept`` (leave it as it is).
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    ensure_storable(result, "the decision's result")
    with transaction.atomic():
        effect = Effect.objects.get(pk=effect_id)
        run = lock_run(effect.run_id)
        effect.refresh_from_db()
        log = EventLog(run, actor=user)
        branch = _paused_branch(run, effect)
        if branch is not None and effect.status == EffectStatus.UNCERTAIN:
            _decide_in_branch(run, effect, branch, decision, log, user, result)
        elif run.status != RunStatus.PAUSED:
            raise InvalidTransition(f"effect {effect.key!r} is {effect.status} and its run is {run.status}; "
                                    "nothing to decide")
        elif effect.status == EffectStatus.UNCERTAIN and run.pause_reason == PauseReason.UNCERTAIN_EFFECT:
            _decide_uncertain(run, effect, decision, log, user, result)
        elif effect.status == EffectStatus.COMPENSATION_FAILED and run.pause_reason == PauseReason.COMPENSATION_FAILED:
            _decide_compensation(run, effect, decision, log, user)
        else:
            raise InvalidTransition(f"effect {effect.key!r} is {effect.status}; nothing to decide")
        save_run(run)
        log.flush()
        audit.record(AuditAction.DECIDE_EFFECT, user, run=run, target=effect,
                     detail={"key": effect.key, "decision": decision})
    return effect


def _paused_branch(run: Run, effect: Effect) -> StepAttempt | None:
    """The attempt of a paused branch that waits on this effect, if a branch (not the run) waits."""
    pauses = (Event.objects.filter(run=run, kind=EventKind.BRANCH_PAUSED, data__key=effect.key)
              .select_related("attempt__line").order_by("-id"))
    for paused in pauses:  # the same key may pause several branches: each waits on its own effect
        attempt = paused.attempt
        if attempt is None or attempt.line is None or attempt.line.status != LineStatus.PAUSED:
            continue
        if effect.shared or attempt.branch_path == effect.branch_path:
            return attempt
    return None


def _decide_in_branch(run: Run, effect: Effect, paused: StepAttempt, decision: str, log: EventLog, user: Any,
                      result: Any) -> None:
    """Only the branch waited: it goes on (or, to compensate, the run fails and undoes it)."""
    _check_uncertain_decision(decision)
    ledger.decide_uncertain(effect, decision, log, user, result)
    line = paused.line
    Line.objects.filter(pk=line.pk, status=LineStatus.PAUSED).update(status=LineStatus.RUNNING)
    line.status = LineStatus.RUNNING
    log.add(EventKind.BRANCH_RESUMED, paused, decision=decision, branch=line.path)
    _go_on_after(run, effect, decision, paused, log)


def _check_uncertain_decision(decision: str) -> None:
    if decision not in UNCERTAIN_DECISIONS:
        raise InvalidTransition(f"an uncertain effect is decided with {', '.join(UNCERTAIN_DECISIONS)}, "
                                f"not {decision!r}")


def _go_on_after(run: Run, effect: Effect, decision: str, paused: StepAttempt | None, log: EventLog) -> None:
    """After an uncertain effect is decided: fail the run to undo it, or try the step again."""
    if decision == "compensate":
        error = engine_error("EffectCompensated", f"operator chose to compensate uncertain effect {effect.key!r}")
        fail_run(run, log, error, FailureMode.DUPLICATE_SIDE_EFFECT, state_name=effect.state_name, cause=paused)
    elif paused is not None:
        retry_attempt(run, paused, log)


def _paused_attempt(run: Run) -> StepAttempt | None:
    paused = Event.objects.filter(run=run, kind=EventKind.RUN_PAUSED).order_by("-id").first()
    return paused.attempt if paused is not None else None


def _decide_uncertain(run: Run, effect: Effect, decision: str, log: EventLog, user: Any, result: Any) -> None:
    _check_uncertain_decision(decision)
    ledger.decide_uncertain(effect, decision, log, user, result)
    paused = _paused_attempt(run)
    runstate.resume_run(run, log, paused, decision=decision)
    _go_on_after(run, effect, decision, paused, log)


def _decide_compensation(run: Run, effect: Effect, decision: str, log: EventLog, user: Any) -> None:
    if decision not in COMPENSATION_DECISIONS:
        raise InvalidTransition(f"a failed compensation is decided with {', '.join(COMPENSATION_DECISIONS)}, "
                                f"not {decision!r}")
    ledger.decide_compensation(effect, decision, log, user)
    runstate.resume_run(run, log, _paused_attempt(run), decision=decision, key=effect.key)
    if decision == "retry":
        tries = StepAttempt.objects.filter(run=run, kind=AttemptKind.COMPENSATION, effect=effect)
        last = tries.order_by("-sequence").values_list("sequence", flat=True).first() or 0
        runstate.compensate_effect(run, effect, log, sequence=last + 1)
    else:
        runstate.continue_saga(run, log)
