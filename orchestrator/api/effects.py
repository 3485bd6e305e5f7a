"""Effects an operator must decide over the API: the uncertain ones (the intent was recorded but
never confirmed) and failed compensations, listed oldest first; and the decision on one, which
the engine applies (orchestrator.engine.runs.decide_effect) and which resumes its run. Listing
needs ``orchestrator.view_run``, deciding ``orchestrator.change_effect``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Schema

from ..engine.errors import NotSerializable
from ..engine.runs import COMPENSATION_DECISIONS, UNCERTAIN_DECISIONS, decide_effect
from ..models import Effect, EffectStatus
from ..models.effects import UNRESOLVED_EFFECT_STATUSES
from .core import ApiError, api, decode_cursor, encode_cursor, refusals, require

PAGE_MAX = 100
Decision = Literal["happened", "retry", "compensate", "done", "accept"]


class EffectOut(Schema):
    id: int
    run: str = Field(description="the run's id")
    workflow: str
    key: str
    state: str
    branch: str = Field(description="the branch that recorded it, empty for the run's main line")
    status: Literal["uncertain", "compensation_failed"]
    decisions: list[str] = Field(description="what you may decide for it")
    executions: int
    error: Any
    intent_at: datetime
    downstream_idempotent: bool = Field(description="it passes its idempotency key downstream: a retry is safe")


class EffectPage(Schema):
    items: list[EffectOut]
    next_cursor: str | None = Field(description="pass it as ?cursor= for the next page; null on the last")


class EffectFilters(Schema):
    status: Literal["uncertain", "compensation_failed"] | None = Field(default=None, description="both when left out")
    workflow: str | None = Field(default=None, max_length=100)
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=PAGE_MAX)


class EffectDecisionIn(Schema):
    decision: Decision = Field(description="uncertain: happened, retry or compensate; failed compensation: retry, "
                                           "done (undone by hand) or accept (leave it)")
    result: Any = Field(default=None, description="with happened: the result seen downstream")


class EffectDecisionOut(Schema):
    id: int
    status: str
    decision: str
    decided_by: str | None
    run_status: str


def _decisions(effect: Effect) -> list[str]:
    return list(UNCERTAIN_DECISIONS if effect.status == EffectStatus.UNCERTAIN else COMPENSATION_DECISIONS)


def _out(effect: Effect) -> dict[str, Any]:
    return {"id": effect.pk, "run": str(effect.run_id), "workflow": effect.run.workflow.name, "key": effect.key,
            "state": effect.state_name, "branch": effect.branch_path, "status": effect.status,
            "decisions": _decisions(effect), "executions": effect.executions, "error": effect.error,
            "intent_at": effect.intent_at, "downstream_idempotent": effect.downstream_idempotent}


@api.get("/effects", response=refusals() | {200: EffectPage}, tags=["effects"],
         summary="Effects waiting for an operator's decision, oldest first")
def list_effects(request: HttpRequest, filters: Query[EffectFilters]) -> dict[str, Any]:
    require(request, "orchestrator.view_run")
    statuses = [filters.status] if filters.status else sorted(UNRESOLVED_EFFECT_STATUSES)
    found = Effect.objects.filter(status__in=statuses).select_related("run__workflow")
    if filters.workflow:
        found = found.filter(run__workflow__name=filters.workflow)
    if filters.cursor:
        (last_id,) = decode_cursor(filters.cursor, 1)
        if not isinstance(last_id, int):
            raise ApiError(422, "invalid", "cursor is not one this API gave; start again without it", "cursor")
        found = found.filter(id__gt=last_id)
    page = list(found.order_by("id")[:filters.limit + 1])
    more = len(page) > filters.limit
    page = page[:filters.limit]
    return {"items": [_out(effect) for effect in page], "next_cursor": encode_cursor(page[-1].pk) if more else None}


@api.post("/effects/{effect_id}/decide", response=refusals(400, 413, 404, 409) | {200: EffectDecisionOut},
          tags=["effects"],
          summary="Decide an uncertain effect or a failed compensation")
def decide(request: HttpRequest, effect_id: int, body: EffectDecisionIn) -> dict[str, Any]:
    """The operator's answer, which resumes the run (or its saga). Refused with 409 when the
    effect has nothing to decide (already decided, or its run is not waiting on it), and with
    422 for a decision that does not fit its status (``decisions`` in the list says which do)."""
    require(request, "orchestrator.change_effect")
    effect = Effect.objects.filter(pk=effect_id).first()
    if effect is None:
        raise ApiError(404, "effect_not_found", f"there is no effect {effect_id}", "effect_id")
    if effect.status in UNRESOLVED_EFFECT_STATUSES and body.decision not in _decisions(effect):
        raise ApiError(422, "invalid", f"an effect that is {effect.status} is decided with "
                       f"{', '.join(_decisions(effect))}, not {body.decision!r}", "decision")
    try:
        decide_effect(effect.pk, body.decision, user=request.user, result=body.result)
    except NotSerializable as exc:
        raise ApiError(422, "invalid", str(exc), "result") from exc
    effect = Effect.objects.select_related("run", "decided_by").get(pk=effect.pk)
    return {"id": effect.pk, "status": effect.status, "decision": effect.decision, "run_status": effect.run.status,
            "decided_by": effect.decided_by.get_username() if effect.decided_by else None}
