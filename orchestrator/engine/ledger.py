"""The effects ledger's transitions: the one place an effect's status changes.

Writes made for a worker are fenced like a checkpoint: they commit only while the worker's
attempt is still running under its claim token, and only from the status (and owner) the
write expects. A worker that lost its claim can only add an event (``effect_late_result``,
with what it reported); if its execution happened after another one had, the ledger counts
a duplicate (``effect_duplicated``) so it is never silent.

Each effect records which attempts reported their execution themselves (``completed_by``: the
function returned, in time or late). Two of them is a duplicate. A ``check`` that finds the
effect downstream, or an operator who says it happened, confirms it but credits no attempt:
neither can tell which execution it saw, and crediting the wrong one would count a duplicate
that never happened. A retry after an execution of unknown outcome (an idempotent
effect retried after a crash) is counted apart, in ``unknown_retries``: it is a duplicate
only if the downstream ignored the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from ..models import AttemptStatus, Effect, EffectStatus, Event, EventKind, StepAttempt
from . import clock
from .claims import Claim
from .errors import Cancelled, EffectKeyClash, InvalidTransition, error_payload
from .eventlog import EventLog
from .storable import storable_or_repr

E = EffectStatus
# Done: the stored result is returned, the function never runs again.
DONE = (E.CONFIRMED, E.COMPENSATING, E.COMPENSATED, E.COMPENSATION_FAILED, E.NOT_COMPENSATED)
REEXECUTABLE = (E.FAILED, E.RETRY_APPROVED)
EXECUTE, DEDUP_HIT, UNCERTAIN, CHECK, LOOK_AGAIN = "execute", "dedup_hit", "uncertain", "check", "look_again"


@dataclass
class Decision:
    """What ``ctx.effect`` does next: run the function, return a stored result, ask ``check``,
    or pause the run because nobody can tell whether the effect happened."""

    action: str
    effect: Effect
    result: Any = None


def step_scope(attempt: StepAttempt) -> str:
    """The step an attempt belongs to, as an effect's scope: state#visit[/branch path]."""
    branch = f"/{attempt.branch_path}" if attempt.branch_path else ""
    return f"{attempt.state_name}#{attempt.sequence}{branch}"


def holds(claim: Claim) -> bool:
    """Is the attempt still running under this claim? (The fence of every worker's write.)"""
    return StepAttempt.objects.filter(
        pk=claim.attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token
    ).exists()


def _locked(effect_id: int) -> Effect:
    return Effect.objects.select_for_update().get(pk=effect_id)


def _clash(key: str, mine: str, other: Effect, attempt: StepAttempt) -> EffectKeyClash:
    here = f"'{attempt.state_name}' (step {attempt.sequence})"
    if other.shared:
        return EffectKeyClash(
            f"effect key {key!r} is shared across the run by step {other.step_label}, but step {here} uses it "
            "as its own; pass shared=True in both steps to share one effect, or give this one another key")
    return EffectKeyClash(
        f"effect key {key!r} belongs to step {other.step_label}, but step {here} asks to share it; "
        "pass shared=True in both steps, or give this one another key")


def open_intent(claim: Claim, key: str, *, shared: bool, idempotent: bool, compensate_path: str,
                has_check: bool) -> Decision:
    """Look the effect up in its scope and decide; unless it is done or uncertain, record
    this attempt's intent (one transaction). Safe to repeat after an unknown commit."""
    attempt = claim.attempt
    scope = "" if shared else step_scope(attempt)
    with transaction.atomic():
        rows = list(Effect.objects.select_for_update().filter(run_id=attempt.run_id, key=key).order_by("id"))
        effect = next((row for row in rows if row.scope == scope), None)
        other = next((row for row in rows if row.scope != scope and (shared or row.shared)), None)
        if other is not None:
            raise _clash(key, scope, other, attempt)
        if not holds(claim):
            raise Cancelled()
        log = EventLog(attempt.run_id)
        if effect is not None and effect.status in DONE:
            Effect.objects.filter(pk=effect.pk).update(dedup_hits=effect.dedup_hits + 1)
            log.add(EventKind.EFFECT_DEDUP_HIT, attempt, key=key)
            log.flush()
            return Decision(DEDUP_HIT, effect, effect.result)
        if effect is None:
            effect = Effect(run_id=attempt.run_id, key=key, scope=scope, state_name=attempt.state_name,
                            sequence=attempt.sequence, branch_path=attempt.branch_path, queue=attempt.queue)
            _take(effect, attempt, idempotent, compensate_path, log)
            return Decision(EXECUTE, effect)
        if effect.status == E.INTENT and effect.attempt_id == attempt.pk:
            return Decision(EXECUTE, effect)  # our own intent, from a try whose commit we did not hear back from
        if effect.status in REEXECUTABLE:
            _take(effect, attempt, idempotent, compensate_path, log, again=True)
            return Decision(EXECUTE, effect)
        # An intent of another attempt, never confirmed (or already found uncertain): did it happen?
        late = _late_result(effect)
        if late is not None:
            _confirm(effect, effect.attempt_id, late, log, attempt, from_late_result=effect.attempt_id)
            Effect.objects.filter(pk=effect.pk).update(dedup_hits=effect.dedup_hits + 1)
            log.flush()
            return Decision(DEDUP_HIT, effect, late)
        if has_check:
            return Decision(CHECK, effect)
        if idempotent:
            effect.unknown_retries += 1
            log.add(EventKind.EFFECT_RETRIED, attempt, key=key, previous_attempt=effect.attempt_id)
            _take(effect, attempt, idempotent, compensate_path, log, again=True)
            return Decision(EXECUTE, effect)
        if effect.status == E.INTENT:
            Effect.objects.filter(pk=effect.pk, status=E.INTENT).update(status=E.UNCERTAIN)
            effect.status = E.UNCERTAIN
            log.add(EventKind.EFFECT_UNCERTAIN, attempt, key=key, previous_attempt=effect.attempt_id)
            log.flush()
        return Decision(UNCERTAIN, effect)


def _take(effect: Effect, attempt: StepAttempt, idempotent: bool, compensate_path: str, log: EventLog,
          again: bool = False) -> None:
    """Record this attempt's intent to execute the effect (new, or once more)."""
    effect.status = E.INTENT
    effect.attempt = attempt
    effect.downstream_idempotent = idempotent
    effect.compensate = compensate_path
    effect.executions += 1
    effect.intent_at = clock.now()
    effect.error = None
    effect.save()
    log.add(EventKind.EFFECT_INTENT, attempt, key=effect.key, **({"again": True} if again else {}))
    log.flush()


def _late_result(effect: Effect) -> Any:
    """The result the owning attempt reported after it lost its claim, if it did."""
    if effect.attempt_id not in effect.completed_by:
        return None
    event = (Event.objects.filter(run_id=effect.run_id, attempt_id=effect.attempt_id,
                                  kind=EventKind.EFFECT_LATE_RESULT, data__key=effect.key)
             .exclude(data__result=None).order_by("-id").first())
    return None if event is None else event.data["result"]


def _completed(effect: Effect, attempt_id: int | None, log: EventLog, by: StepAttempt | None = None) -> None:
    """An execution by ``attempt_id`` is known to have happened; a second one is a duplicate."""
    if attempt_id is None or attempt_id in effect.completed_by:
        return
    effect.completed_by = [*effect.completed_by, attempt_id]
    if len(effect.completed_by) > 1:
        effect.duplicates += 1
        log.add(EventKind.EFFECT_DUPLICATED, by, state_name=effect.state_name, key=effect.key,
                attempts=effect.completed_by)


def _confirm(effect: Effect, executed_by: int | None, result: Any, log: EventLog, by: StepAttempt | None,
             **data: Any) -> None:
    _completed(effect, executed_by, log, by)
    effect.status = E.CONFIRMED
    effect.result = result
    effect.confirmed_at = clock.now()
    effect.error = None
    effect.save(update_fields=["status", "result", "confirmed_at", "error", "completed_by", "duplicates"])
    log.add(EventKind.EFFECT_CONFIRMED, by, state_name=effect.state_name, key=effect.key, **data)


def resolve_by_check(claim: Claim, seen: Effect, found: bool, result: Any) -> Decision:
    """The downstream answered ``check``: found (it happened: confirm it with what was found)
    or not (it did not: this attempt executes it). LOOK_AGAIN if the effect moved meanwhile."""
    with transaction.atomic():
        effect = _locked(seen.pk)
        if not holds(claim):
            raise Cancelled()
        if effect.status != seen.status or effect.attempt_id != seen.attempt_id:
            return Decision(LOOK_AGAIN, effect)
        log = EventLog(effect.run_id)
        log.add(EventKind.EFFECT_CHECKED, claim.attempt, key=effect.key, found=found,
                previous_attempt=effect.attempt_id)
        if not found:
            _take(effect, claim.attempt, effect.downstream_idempotent, effect.compensate, log, again=True)
            return Decision(EXECUTE, effect)
        _confirm(effect, None, result, log, claim.attempt, found_by_check=True)
        Effect.objects.filter(pk=effect.pk).update(dedup_hits=effect.dedup_hits + 1)
        log.flush()
        return Decision(DEDUP_HIT, effect, result)


def confirm(claim: Claim, effect: Effect, result: Any) -> bool:
    """The function returned: confirm the effect, if it is still this attempt's to confirm.
    Otherwise the result is recorded as late (and a duplicate counted if it is one)."""
    with transaction.atomic():
        current = _locked(effect.pk)
        log = EventLog(current.run_id)
        if current.status == E.INTENT and current.attempt_id == claim.attempt.pk and holds(claim):
            _confirm(current, claim.attempt.pk, result, log, claim.attempt)
            log.flush()
            return True
        _late(current, claim, log, result=result)
        log.flush()
        return False


def record_failure(claim: Claim, effect: Effect, exc: BaseException, *, not_done: bool, uncertain: bool) -> bool:
    """The function raised. ``not_done``: the effect definitely did not happen (re-executable).
    ``uncertain``: nobody can tell, and retrying is unsafe (the run pauses). Otherwise the
    outcome is unknown but a later attempt may retry it (key passed downstream) or check it."""
    error = error_payload(exc)
    with transaction.atomic():
        current = _locked(effect.pk)
        log = EventLog(current.run_id)
        if not (current.status == E.INTENT and current.attempt_id == claim.attempt.pk and holds(claim)):
            _late(current, claim, log, error=error)
            log.flush()
            return False
        to = E.FAILED if not_done else E.UNCERTAIN if uncertain else E.INTENT
        Effect.objects.filter(pk=current.pk, status=E.INTENT).update(status=to, error=error)
        log.add(EventKind.EFFECT_FAILED, claim.attempt, key=current.key, error=error,
                outcome="not done" if not_done else "unknown")
        if to == E.UNCERTAIN:
            log.add(EventKind.EFFECT_UNCERTAIN, claim.attempt, key=current.key, previous_attempt=claim.attempt.pk)
        log.flush()
        return True


def _late(effect: Effect, claim: Claim, log: EventLog, *, result: Any = None, error: Any = None) -> None:
    """A worker that lost its claim reports: an event, never a ledger overwrite."""
    returned = error is None
    log.add(EventKind.EFFECT_LATE_RESULT, claim.attempt, key=effect.key, worker=claim.worker,
            status_seen=effect.status, owner=effect.attempt_id,
            **({"result": storable_or_repr(result)} if returned else {"error": error}))
    if returned:
        _completed(effect, claim.attempt.pk, log, claim.attempt)
        Effect.objects.filter(pk=effect.pk).update(completed_by=effect.completed_by, duplicates=effect.duplicates)


# --- operator decisions and the saga (inside the run's transaction) --------------------------------


def decide_uncertain(effect: Effect, decision: str, log: EventLog, user: Any, result: Any = None) -> None:
    """``happened`` (with the result seen downstream), ``retry`` (it did not happen) or
    ``compensate`` (it happened; undo it): the effect is confirmed or made re-executable."""
    current = _locked(effect.pk)
    if current.status != E.UNCERTAIN:
        raise InvalidTransition(f"effect {current.key!r} is {current.status}; nothing to decide")
    current.decided_by = user if getattr(user, "pk", None) else None
    current.decision = decision
    if decision == "retry":
        current.status = E.RETRY_APPROVED
        current.save(update_fields=["status", "decided_by", "decision"])
    else:
        current.save(update_fields=["decided_by", "decision"])
        _confirm(current, None, result, log, None, decision=decision)
    log.add(EventKind.EFFECT_DECIDED, state_name=current.state_name, key=current.key, decision=decision)
    effect.status = current.status


def decide_compensation(effect: Effect, decision: str, log: EventLog, user: Any) -> None:
    """After a failed compensation: ``retry`` it, ``done`` (undone by hand) or ``accept`` (leave it)."""
    to = {"retry": E.COMPENSATING, "done": E.COMPENSATED, "accept": E.NOT_COMPENSATED}[decision]
    changes: dict[str, Any] = {"status": to, "decision": decision,
                               "decided_by": user if getattr(user, "pk", None) else None}
    if to == E.COMPENSATED:
        changes["compensated_at"] = clock.now()
    if not Effect.objects.filter(pk=effect.pk, status=E.COMPENSATION_FAILED).update(**changes):
        raise InvalidTransition(f"effect {effect.key!r} is not waiting on a failed compensation")
    effect.status = to
    log.add(EventKind.EFFECT_DECIDED, state_name=effect.state_name, key=effect.key, decision=decision)


def start_compensation(effect: Effect) -> None:
    if not Effect.objects.filter(pk=effect.pk, status=E.CONFIRMED).update(status=E.COMPENSATING):
        raise InvalidTransition(f"effect {effect.key!r} is not confirmed; it cannot be compensated")


def end_compensation(effect: Effect, log: EventLog, *, ok: bool, error: Any = None, force: bool = False) -> None:
    """A compensation attempt ended (``force``: the saga's deadline ended it for whatever was left)."""
    source = (E.CONFIRMED, E.COMPENSATING, E.COMPENSATION_FAILED) if force else (E.COMPENSATING,)
    if ok:
        moved = Effect.objects.filter(pk=effect.pk, status__in=source).update(
            status=E.COMPENSATED, compensated_at=clock.now())
        log.add(EventKind.COMPENSATION_DONE, state_name=effect.state_name, key=effect.key)
    else:
        moved = Effect.objects.filter(pk=effect.pk, status__in=source).update(
            status=E.COMPENSATION_FAILED, error=error)
        log.add(EventKind.COMPENSATION_FAILED, state_name=effect.state_name, key=effect.key, error=error)
    if not moved:
        raise InvalidTransition(f"effect {effect.key!r} is not being compensated")
