"""The checkpoint of model answers: an agent state's visit asks its provider once, and a step
resumed after its worker died replays the answer instead of paying for it again.

The answer is written as soon as it arrives, fenced like a checkpoint (only while the
attempt is still this worker's): a zombie worker's late answer is not kept. The run pays for
each answer once: the attempt that received it reports its usage when it ends, and an attempt
that never ended (lost, or timed out by the sweeper) is charged from its rows by whoever
marks it so (``unreported_usage``).
"""

from __future__ import annotations

import time
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from ..models import AttemptStatus, EventKind, ModelCall, StepAttempt
from . import clock
from .claims import Claim, Usage
from .errors import Cancelled
from .eventlog import EventLog
from .providers import ModelAnswer, ModelRequest, get_provider, price
from .reconnect import with_db_retry


def ask(claim: Claim, provider_name: str, request: ModelRequest) -> tuple[ModelAnswer, ModelCall, bool]:
    """The visit's answer: replayed when an earlier attempt of the visit got one (and did not
    refuse it), else asked of the provider and recorded. Returns (answer, its row, paid now)."""
    attempt = claim.attempt
    replay = with_db_retry(lambda: ModelCall.objects.filter(
        run_id=attempt.run_id, state_name=attempt.state_name, sequence=attempt.sequence, discarded=False,
    ).order_by("-id").first())
    if replay is not None:
        with_db_retry(lambda: _log(claim, EventKind.MODEL_REPLAYED, replay))
        return _answer_of(replay), replay, False
    started = time.monotonic()
    answer = get_provider(provider_name).complete(request)
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    cost = answer.cost if answer.cost is not None else price(provider_name, answer.model or request.model,
                                                             answer.tokens_in, answer.tokens_out)
    call = with_db_retry(lambda: _record(claim, provider_name, request, answer, cost, latency_ms))
    return _answer_of(call), call, True


def _record(claim: Claim, provider_name: str, request: ModelRequest, answer: ModelAnswer, cost: Decimal,
            latency_ms: float) -> ModelCall:
    attempt = claim.attempt
    with transaction.atomic():
        ours = StepAttempt.objects.select_for_update().filter(
            pk=attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token).exists()
        if not ours:
            raise Cancelled()
        existing = ModelCall.objects.filter(attempt_id=attempt.pk).first()  # written before a lost connection
        if existing is not None:
            return existing
        call = ModelCall.objects.create(
            run_id=attempt.run_id, attempt_id=attempt.pk, state_name=attempt.state_name, sequence=attempt.sequence,
            provider=provider_name, model=answer.model or request.model, answer=answer.as_data(),
            tokens_in=answer.tokens_in, tokens_out=answer.tokens_out, cost=cost, latency_ms=latency_ms,
            created_at=clock.now(),
        )
        _log(claim, EventKind.MODEL_ANSWERED, call)
    return call


def _log(claim: Claim, kind: str, call: ModelCall) -> None:
    with transaction.atomic():
        log = EventLog(claim.attempt.run_id)
        log.add(kind, claim.attempt, model=call.model, provider=call.provider, tokens=call.tokens,
                cost=str(call.cost), latency_ms=call.latency_ms, model_call=call.pk, paid_by=call.attempt_id)
        log.flush()


def _answer_of(call: ModelCall) -> ModelAnswer:
    answer = ModelAnswer.from_data(call.answer, call.tokens_in, call.tokens_out)
    return ModelAnswer(answer.content, answer.tool_calls, answer.tokens_in, answer.tokens_out, call.cost,
                       answer.model)


def discard(call: ModelCall) -> None:
    """The attempt refused this answer (a route outside the definition's, a broken contract):
    a retry of the visit asks the model again instead of replaying it."""
    with_db_retry(lambda: ModelCall.objects.filter(pk=call.pk).update(discarded=True))


def unreported_usage(attempt: StepAttempt) -> Usage:
    """What the answers paid by an attempt that never reported its usage cost."""
    totals = ModelCall.objects.filter(attempt_id=attempt.pk).aggregate(
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost"))
    usage = Usage()
    usage.add((totals["tokens_in"] or 0) + (totals["tokens_out"] or 0), totals["cost"] or 0)
    return usage
