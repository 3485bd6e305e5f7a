"""Approvals over the API: the caller's pending requests (only those they may decide) and a
decision on one. Who may decide is the engine's (orchestrator.engine.approval_access): the
groups or permissions the approval's definition names, by default ``orchestrator.decide_approval``,
never the run's starter under four-eyes. The engine decides and refuses; this module maps its
refusal to the status a program can act on: 403 (not yours to decide), 409 (already decided or
withdrawn), 422 (an outcome or edit the approval does not allow)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from ninja import Field, Query, Schema

from ..engine import approvals
from ..engine.approval_access import decidable_by, request_refusal
from ..engine.errors import ApprovalRefused, NotSerializable
from ..models import ApprovalRequest, ApprovalStatus
from .core import ApiError, api, decode_cursor, encode_cursor, refusals, require

PAGE_MAX = 100


class ApprovalOut(Schema):
    id: int
    run: str = Field(description="the run's id")
    workflow: str
    version: int
    state: str = Field(description="the approval state, or the state whose transition is gated")
    branch: str = Field(description="the branch waiting, empty for the run's main line")
    gate: bool
    title: str
    outcomes: list[str] = Field(description="what you may decide: approve, reject and any labelled outcome")
    editable: str | None = Field(description="the context path you may replace with edited data, if any")
    proposed: Any = Field(description="what the reviewer is shown")
    four_eyes: bool
    requested_by: str | None
    created_at: datetime
    due_at: datetime | None
    escalation_level: int
    claimed_by: str | None


class ApprovalPage(Schema):
    items: list[ApprovalOut]
    next_cursor: str | None = Field(description="pass it as ?cursor= for the next page; null on the last")


class PendingFilters(Schema):
    workflow: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=PAGE_MAX)


class DecisionIn(Schema):
    outcome: str = Field(min_length=1, max_length=100, description="approve, reject, or a labelled outcome")
    comment: str = Field(default="", max_length=5000)
    data: Any = Field(default=None, description="edited data for the approval's editable path; leave it out "
                                                "to keep what was proposed")


class DecisionOut(Schema):
    id: int
    status: str
    outcome: str
    decided_by: str | None
    decided_at: datetime | None
    comment: str
    edited: bool


def _out(request: ApprovalRequest) -> dict[str, Any]:
    run = request.run
    return {"id": request.pk, "run": str(run.pk), "workflow": run.workflow.name, "version": run.version.number,
            "state": request.state_name, "branch": request.branch_path, "gate": request.gate, "title": request.title,
            "outcomes": request.outcome_names, "editable": request.edit_key or None, "proposed": request.proposed,
            "four_eyes": request.four_eyes, "created_at": request.created_at, "due_at": request.due_at,
            "requested_by": request.requested_by.get_username() if request.requested_by else None,
            "escalation_level": request.escalation_level,
            "claimed_by": request.claimed_by.get_username() if request.claimed_by else None}


@api.get("/approvals", response=refusals() | {200: ApprovalPage}, tags=["approvals"],
         summary="Pending approvals you may decide, oldest first")
def pending(request: HttpRequest, filters: Query[PendingFilters]) -> dict[str, Any]:
    """The pending requests the caller may decide (four-eyes applied: not those of runs they
    started), oldest first, a page at a time."""
    require(request, "orchestrator.view_run")
    found = decidable_by(request.user).select_related("run__workflow", "run__version", "requested_by", "claimed_by")
    if filters.workflow:
        found = found.filter(run__workflow__name=filters.workflow)
    if filters.state:
        found = found.filter(state_name=filters.state)
    if filters.cursor:
        stamp, last_id = _position(filters.cursor)
        found = found.filter(Q(created_at__gt=stamp) | Q(created_at=stamp, id__gt=last_id))
    page = list(found.order_by("created_at", "id")[:filters.limit + 1])
    more = len(page) > filters.limit
    page = page[:filters.limit]
    cursor = encode_cursor(page[-1].created_at.isoformat(), page[-1].pk) if more else None
    return {"items": [_out(item) for item in page], "next_cursor": cursor}


def _position(cursor: str) -> tuple[datetime, int]:
    stamp, last_id = decode_cursor(cursor, 2)
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None or not isinstance(last_id, int):
        raise ApiError(422, "invalid", "cursor is not one this API gave; start again without it", "cursor")
    return moment, last_id


@api.post("/approvals/{approval_id}/decide", response=refusals(400, 413, 404, 409) | {200: DecisionOut},
          tags=["approvals"],
          summary="Decide a pending approval")
def decide(request: HttpRequest, approval_id: int, body: DecisionIn) -> dict[str, Any]:
    """Approve, reject or choose a labelled outcome, with a comment and, where the approval lets
    reviewers edit, the edited data. Refused: 403 when you may not decide it (not among its
    approvers, or four-eyes: you started the run), 409 when it was already decided or withdrawn
    (the message says by whom and when), 422 for an outcome or an edit it does not allow."""
    require(request, "orchestrator.view_run")
    found = ApprovalRequest.objects.select_related("decided_by").filter(pk=approval_id).first()
    if found is None:
        raise ApiError(404, "approval_not_found", f"there is no approval request {approval_id}", "approval_id")
    if found.status != ApprovalStatus.PENDING:
        raise ApiError(409, "already_decided", approvals.already(found))
    reason = request_refusal(request.user, found)
    if reason is not None:
        raise ApiError(403, "not_an_approver", reason)
    if body.outcome not in found.outcome_names:
        raise ApiError(422, "invalid", f"'{body.outcome}' is not an outcome of this approval; use one of "
                       f"{', '.join(found.outcome_names)}", "outcome")
    data = body.data if "data" in body.model_fields_set else approvals.NO_EDIT
    try:
        decided = approvals.decide(approval_id, request.user, body.outcome, body.comment, data)
    except NotSerializable as exc:
        raise ApiError(422, "invalid", str(exc), "data") from exc
    except ApprovalRefused as refused:
        found.refresh_from_db()
        if found.status != ApprovalStatus.PENDING:  # decided by someone else meanwhile
            raise ApiError(409, "already_decided", str(refused)) from refused
        raise ApiError(422, "invalid", str(refused), "data") from refused
    return {"id": decided.pk, "status": decided.status, "outcome": decided.outcome, "comment": decided.comment,
            "decided_by": decided.decided_by.get_username() if decided.decided_by else None,
            "decided_at": decided.decided_at, "edited": decided.edited}
