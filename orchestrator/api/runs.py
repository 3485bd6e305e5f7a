"""Runs over the API: start (with ``Idempotency-Key``), list with filters and a cursor, get one
whole, cancel (or cancel and compensate), redrive. Following a run's events live is stream.py's."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Q
from django.http import HttpRequest
from ninja import Field, Header, Query, Schema, Status

from ..engine.runs import cancel_run, redrive_run, start_run
from ..models import Effect, Event, Run, RunStatus, StepAttempt
from .core import ApiError, api, refusals, require

PAGE_MAX = 100


class RunIn(Schema):
    workflow: str = Field(description="the workflow's name")
    input: Any = Field(default=None, description="the run's input (checked against the input schema)")
    version: int | None = Field(default=None, description="a version number; the latest when left out")


class RunOut(Schema):
    id: UUID
    workflow: str
    version: int
    status: str
    failure_mode: str
    created_at: datetime
    finished_at: datetime | None
    started_by: str | None
    tokens: int
    cost: Decimal
    error: Any = None


class AttemptOut(Schema):
    id: int
    state: str
    attempt: int
    kind: str
    status: str
    scheduled_at: datetime | None
    claimed_at: datetime | None
    finished_at: datetime | None
    error: Any = None


class EventOut(Schema):
    id: int
    kind: str
    state: str
    created_at: datetime
    actor: str | None
    data: Any


class EffectOut(Schema):
    id: int = Field(description="decide an uncertain effect with POST /api/effects/{id}/decide")
    key: str
    state: str
    status: str
    executions: int
    dedup_hits: int
    duplicates: int


class RunDetail(RunOut):
    input: Any
    context: Any
    output: Any
    attempts: list[AttemptOut]
    events: list[EventOut]
    effects: list[EffectOut]


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None = Field(description="pass it as ?cursor= for the next page; null on the last")


class RunFilters(Schema):
    workflow: str | None = None
    status: str | None = None
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=PAGE_MAX)


class CancelIn(Schema):
    compensate: bool = Field(default=False, description="undo the run's confirmed effects, newest first")
    reason: str = Field(default="", max_length=500)


class RedriveIn(Schema):
    reason: str = Field(default="", max_length=500)


def _run_out(run: Run) -> dict[str, Any]:
    return {"id": run.pk, "workflow": run.workflow.name, "version": run.version.number, "status": run.status,
            "failure_mode": run.failure_mode, "created_at": run.created_at, "finished_at": run.finished_at,
            "started_by": run.started_by.get_username() if run.started_by else None, "tokens": run.tokens_used,
            "cost": run.cost_used, "error": run.error}


def _runs() -> Any:
    return Run.objects.select_related("workflow", "version", "started_by")


def _get(run_id: UUID) -> Run:
    run = _runs().filter(pk=run_id).first()
    if run is None:
        raise ApiError(404, "run_not_found", f"no run {run_id}", "id")
    return run


@api.post("/runs", response=refusals(400, 413, 404) | {200: RunOut, 201: RunOut}, tags=["runs"], summary="Start a run")
def start(request: HttpRequest, body: RunIn,
          idempotency_key: str | None = Header(default=None, alias="Idempotency-Key")) -> Status:
    """Start a run of a workflow's latest version (or ``version``). With an ``Idempotency-Key``
    header, a repeated request returns the run the first one started (200); the same key with
    another body is refused (422, ``idempotency_key_reused``)."""
    require(request, "orchestrator.add_run")
    if idempotency_key:
        earlier = _runs().filter(workflow__name=body.workflow, idempotency_key=idempotency_key).first()
        if earlier is not None:
            same = earlier.input == ({} if body.input is None else body.input) and (
                body.version is None or body.version == earlier.version.number)
            if not same:
                raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key started a run with another "
                               "body; send a new key for a new run", "Idempotency-Key")
            return Status(200, _run_out(earlier))
    run, created = start_run(body.workflow, body.input, idempotency_key=idempotency_key, user=request.user,
                             version=body.version)
    return Status(201 if created else 200, _run_out(_get(run.pk)))


def _cursor(text: str) -> tuple[datetime, str]:
    try:
        stamp, run_id = json.loads(base64.urlsafe_b64decode(text.encode()).decode())
        return datetime.fromisoformat(stamp), str(UUID(run_id))
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid", "cursor is not one this API gave; start again without it", "cursor") from exc


@api.get("/runs", response=refusals() | {200: RunPage}, tags=["runs"], summary="List runs, newest first")
def list_runs(request: HttpRequest, filters: Query[RunFilters]) -> dict[str, Any]:
    require(request, "orchestrator.view_run")
    runs = _runs().order_by("-created_at", "-id")
    if filters.workflow:
        runs = runs.filter(workflow__name=filters.workflow)
    if filters.status:
        if filters.status not in RunStatus.values:
            raise ApiError(422, "invalid", f"status must be one of {', '.join(RunStatus.values)}", "status")
        runs = runs.filter(status=filters.status)
    if filters.cursor:
        stamp, run_id = _cursor(filters.cursor)
        runs = runs.filter(Q(created_at__lt=stamp) | Q(created_at=stamp, id__lt=run_id))
    page = list(runs[:filters.limit + 1])
    more = len(page) > filters.limit
    page = page[:filters.limit]
    cursor = None
    if more:
        last = page[-1]
        cursor = base64.urlsafe_b64encode(json.dumps([last.created_at.isoformat(), str(last.pk)]).encode()).decode()
    return {"items": [_run_out(run) for run in page], "next_cursor": cursor}


@api.get("/runs/{run_id}", response=refusals(404) | {200: RunDetail}, tags=["runs"],
         summary="A run: status, context, attempts, events")
def get_run(request: HttpRequest, run_id: UUID) -> dict[str, Any]:
    """The run with its attempts, its latest 200 events (oldest first) and its effects ledger."""
    require(request, "orchestrator.view_run")
    run = _get(run_id)
    attempts = StepAttempt.objects.filter(run=run).order_by("id")
    events = list(Event.objects.filter(run=run).select_related("actor").order_by("-id")[:200])
    return {
        **_run_out(run), "input": run.input, "context": run.context, "output": run.output,
        "attempts": [{"id": a.pk, "state": a.state_name, "attempt": a.attempt, "kind": a.kind, "status": a.status,
                      "scheduled_at": a.scheduled_at, "claimed_at": a.claimed_at, "finished_at": a.finished_at,
                      "error": a.error} for a in attempts],
        "events": [{"id": e.pk, "kind": e.kind, "state": e.state_name, "created_at": e.created_at,
                    "actor": e.actor.get_username() if e.actor else None, "data": e.data} for e in reversed(events)],
        "effects": [{"id": f.pk, "key": f.key, "state": f.state_name, "status": f.status, "executions": f.executions,
                     "dedup_hits": f.dedup_hits, "duplicates": f.duplicates}
                    for f in Effect.objects.filter(run=run).order_by("id")],
    }


@api.post("/runs/{run_id}/cancel", response=refusals(400, 413, 404, 409) | {200: RunOut}, tags=["runs"],
          summary="Cancel a run (and compensate)")
def cancel(request: HttpRequest, run_id: UUID, body: CancelIn) -> dict[str, Any]:
    require(request, "orchestrator.change_run")
    _get(run_id)
    cancel_run(run_id, user=request.user, reason=body.reason, compensate=body.compensate)
    return _run_out(_get(run_id))


@api.post("/runs/{run_id}/redrive", response=refusals(400, 413, 404, 409) | {200: RunOut}, tags=["runs"],
          summary="Redrive a failed run")
def redrive(request: HttpRequest, run_id: UUID, body: RedriveIn) -> dict[str, Any]:
    require(request, "orchestrator.change_run")
    _get(run_id)
    redrive_run(run_id, user=request.user, reason=body.reason)
    return _run_out(_get(run_id))
