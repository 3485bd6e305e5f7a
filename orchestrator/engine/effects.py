"""``ctx.effect`` in action: intent, execute, confirm; dedup hits; reconciliation of effects
whose outcome is unknown. The ledger's writes themselves are in ``ledger``.

Intent and confirmation each commit in their own short transaction, outside the step's, so
a worker that dies inside the effect leaves a visible intent behind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from . import ledger
from .claims import Claim
from .errors import Cancelled, EffectNotDone, EffectUncertain, NotSerializable
from .reconnect import with_db_retry
from .storable import problem


class _NotFound:
    """What ``check`` returns when the downstream has no trace of the effect."""

    def __repr__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND: Any = _NotFound()
Check = Callable[[str], Any]


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


def perform_effect(
    claim: Claim,
    key: str,
    fn: Callable[[str], Any],
    *,
    compensate: Callable[..., Any] | None = None,
    idempotent: bool = False,
    check: Check | None = None,
    shared: bool = False,
) -> Any:
    """Run ``fn(idempotency_key)`` at most once for this step (or run, if ``shared``) and key.

    An earlier execution of unknown outcome is resolved by ``check`` when given (the downstream
    is asked), retried when ``idempotent`` (the key goes downstream), and otherwise raises
    EffectUncertain, which pauses the run for an operator.
    """
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValueError("an effect key must be a non-empty string of at most 200 characters")
    compensate_path = compensation_path(compensate)

    def open_intent() -> ledger.Decision:
        return with_db_retry(lambda: ledger.open_intent(
            claim, key, shared=shared, idempotent=idempotent, compensate_path=compensate_path,
            has_check=check is not None))

    decision = open_intent()
    for _ in range(5):
        if decision.action == ledger.CHECK:
            decision = _reconcile(claim, decision.effect, check)  # type: ignore[arg-type]
        elif decision.action == ledger.LOOK_AGAIN:
            decision = open_intent()
        else:
            break
    if decision.action == ledger.DEDUP_HIT:
        return decision.result
    if decision.action != ledger.EXECUTE:
        raise EffectUncertain(key)
    effect = decision.effect
    try:
        result = fn(effect.idempotency_key)
    except EffectNotDone as exc:
        refusal = exc
        with_db_retry(lambda: ledger.record_failure(claim, effect, refusal, not_done=True, uncertain=False))
        raise
    except Exception as failure:
        return _after_failure(claim, effect, failure, idempotent=idempotent, check=check)
    reason = problem(result)
    if reason is not None:
        # It happened all the same: confirm it (so it is never repeated), then fail loudly.
        with_db_retry(lambda: ledger.confirm(claim, effect, {"not_json": repr(result)[:1000]}))
        raise NotSerializable(f"effect {key!r} returned a result that cannot be stored: {reason}")
    if not with_db_retry(lambda: ledger.confirm(claim, effect, result)):
        raise Cancelled()  # the attempt is no longer ours: stop the handler here
    return result


def _reconcile(claim: Claim, effect: Any, check: Check) -> ledger.Decision:
    """Ask the downstream whether an execution of unknown outcome happened."""
    answer = check(effect.idempotency_key)
    found = answer is not NOT_FOUND
    if found and problem(answer) is not None:
        raise NotSerializable(f"check for effect {effect.key!r} returned a result that cannot be stored")
    return with_db_retry(lambda: ledger.resolve_by_check(claim, effect, found, None if not found else answer))


def _after_failure(claim: Claim, effect: Any, failure: Exception, *, idempotent: bool,
                   check: Check | None) -> Any:
    """The effect function raised something other than EffectNotDone: did the effect happen?

    With ``check``, ask now: found, and the step goes on with what was found; not found, and
    the failure is the step's (its retry rules apply). Without, a key passed downstream makes
    a retry safe (the intent stays open for the next attempt); otherwise the run pauses.
    """
    if check is not None:
        try:
            answer = check(effect.idempotency_key)
        except Exception:
            answer = failure  # the check failed too: a later attempt asks again
        if answer is NOT_FOUND:
            with_db_retry(lambda: ledger.record_failure(claim, effect, failure, not_done=True, uncertain=False))
            raise failure
        if answer is not failure and problem(answer) is None:
            if not with_db_retry(lambda: ledger.confirm(claim, effect, answer)):
                raise Cancelled()
            return answer
        with_db_retry(lambda: ledger.record_failure(claim, effect, failure, not_done=False, uncertain=False))
        raise failure
    uncertain = not idempotent
    with_db_retry(lambda: ledger.record_failure(claim, effect, failure, not_done=False, uncertain=uncertain))
    if uncertain:
        raise EffectUncertain(effect.key) from failure
    raise failure
