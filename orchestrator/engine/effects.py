"""The effects ledger in action: intent, execute, confirm; dedup hits; uncertain effects.

Intent and confirmation each commit in their own short transaction, outside the step's, so
a worker that dies inside the effect leaves a visible intent behind.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import AttemptStatus, Effect, EffectStatus, EventKind, StepAttempt
from .claims import Claim
from .errors import Cancelled, EffectUncertain, NotSerializable, error_payload
from .eventlog import EventLog
from .reconnect import with_db_retry

REEXECUTABLE = (EffectStatus.FAILED, EffectStatus.RETRY_APPROVED)
DONE = (EffectStatus.CONFIRMED, EffectStatus.COMPENSATING, EffectStatus.COMPENSATED)
DEDUP_HIT, UNCERTAIN, EXECUTE = "dedup_hit", "uncertain", "execute"


def compensation_path(fn: Callable[..., Any] | None) -> str:
    """The import path of a compensation; it must be a module-level function to be durable."""
    if fn is None:
        return ""
    path = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in fn.__qualname__ or resolve_compensation(path) is not fn:
        raise ValueError(
            f"compensate={fn.__qualname__} must be a module-level function, so a worker can find it later"
        )
    return path


def resolve_compensation(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def _still_ours(claim: Claim) -> bool:
    return StepAttempt.objects.filter(
        pk=claim.attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token
    ).exists()


def perform_effect(
    claim: Claim,
    key: str,
    fn: Callable[[str], Any],
    *,
    compensate: Callable[..., Any] | None = None,
    idempotent: bool = False,
) -> Any:
    """Run ``fn(idempotency_key)`` at most once per (run, key) and return its result.

    ``idempotent=True`` declares that ``fn`` passes the key downstream, which makes
    retrying an uncertain effect safe; otherwise an uncertain effect pauses the run.
    """
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValueError("an effect key must be a non-empty string of at most 200 characters")
    compensate_path = compensation_path(compensate)
    effect, outcome = with_db_retry(lambda: _record_intent(claim, key, compensate_path, idempotent))
    if outcome == DEDUP_HIT:
        return effect.result
    if outcome == UNCERTAIN:
        raise EffectUncertain(key)
    try:
        result = fn(effect.idempotency_key)
    except Exception as failure:
        error = failure
        with_db_retry(lambda: _record_failure(effect, claim.attempt, error))
        raise
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        # It happened all the same: confirm it (so it is never repeated), then fail loudly.
        with_db_retry(lambda: _confirm(effect, claim.attempt, {"not_json": repr(result)[:1000]}))
        raise NotSerializable(f"effect {key!r} returned a result that is not JSON: {exc}") from exc
    with_db_retry(lambda: _confirm(effect, claim.attempt, result))
    return result


def _record_intent(claim: Claim, key: str, compensate_path: str, idempotent: bool) -> tuple[Effect, str]:
    """Look the effect up and, unless it is done or uncertain, record this attempt's intent.

    Returns the effect and what to do: DEDUP_HIT (use its stored result), UNCERTAIN (pause
    the run) or EXECUTE. Safe to repeat: an intent this attempt already holds is reused.
    """
    run_id, attempt = claim.attempt.run_id, claim.attempt
    with transaction.atomic():
        log = EventLog(run_id)
        effect = Effect.objects.select_for_update().filter(run_id=run_id, key=key).first()
        if effect is not None and effect.status in DONE:
            Effect.objects.filter(pk=effect.pk).update(dedup_hits=effect.dedup_hits + 1)
            log.add(EventKind.EFFECT_DEDUP_HIT, attempt, key=key)
            log.flush()
            return effect, DEDUP_HIT
        if not _still_ours(claim):
            raise Cancelled()
        if effect is not None and effect.status == EffectStatus.INTENT and effect.attempt_id == attempt.pk:
            return effect, EXECUTE  # our own intent, from a try whose commit we did not hear back from
        if effect is None:
            effect = Effect(run_id=run_id, key=key, state_name=attempt.state_name, intent_at=timezone.now())
            log.add(EventKind.EFFECT_INTENT, attempt, key=key)
        elif effect.status in REEXECUTABLE:
            log.add(EventKind.EFFECT_INTENT, attempt, key=key, again=True)
        elif effect.status == EffectStatus.INTENT and effect.downstream_idempotent:
            log.add(EventKind.EFFECT_RETRIED, attempt, key=key, previous_attempt=effect.attempt_id)
        else:
            if effect.status == EffectStatus.INTENT:
                effect.status = EffectStatus.UNCERTAIN
                effect.save(update_fields=["status"])
                log.add(EventKind.EFFECT_UNCERTAIN, attempt, key=key, previous_attempt=effect.attempt_id)
                log.flush()
            return effect, UNCERTAIN
        effect.status = EffectStatus.INTENT
        effect.attempt = attempt
        effect.downstream_idempotent = idempotent
        effect.compensate = compensate_path
        effect.executions += 1
        effect.intent_at = timezone.now()
        effect.save()
        log.flush()
    return effect, EXECUTE


def _confirm(effect: Effect, attempt: StepAttempt, result: Any) -> None:
    with transaction.atomic():
        Effect.objects.filter(pk=effect.pk).update(
            status=EffectStatus.CONFIRMED, result=result, confirmed_at=timezone.now(), error=None
        )
        log = EventLog(effect.run_id)
        log.add(EventKind.EFFECT_CONFIRMED, attempt, key=effect.key)
        log.flush()


def _record_failure(effect: Effect, attempt: StepAttempt, exc: BaseException) -> None:
    """The effect function raised: it is recorded as not done, and a retry may run it again."""
    with transaction.atomic():
        Effect.objects.filter(pk=effect.pk, status=EffectStatus.INTENT).update(
            status=EffectStatus.FAILED, error=error_payload(exc)
        )
        log = EventLog(effect.run_id)
        log.add(EventKind.EFFECT_FAILED, attempt, key=effect.key, error=error_payload(exc))
        log.flush()
