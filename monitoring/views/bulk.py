"""Bulk actions on everything a runs-list filter matches: confirm a count, then watch it go."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST, require_safe

from ..bulk import (
    DONE_WORD,
    PERMISSIONS,
    BulkRefused,
    aftermath,
    check_request,
    request_operation,
    request_stop,
    targets,
)
from ..models import BulkAction, BulkOperation
from ..runlist import RunFilter, count_matching
from .runs import STOP_POLLING

# A confirmation older than this is stale: the person confirms a fresh count.
CONFIRMATION_TTL = timedelta(minutes=30)
SAMPLE = 10


def _allowed(request: HttpRequest, action: str) -> None:
    if action in PERMISSIONS and not request.user.has_perm(PERMISSIONS[action]):
        raise PermissionDenied(f"you may not {action} runs")


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def confirm(request: HttpRequest) -> HttpResponse:
    """How many runs the action would touch, a few of them, and the button that starts it."""
    action = request.GET.get("action", "")
    _allowed(request, action)
    filters = RunFilter.from_query(request.GET)
    context: dict[str, Any] = {"action": action, "filters": filters, "query": filters.as_query(),
                               "query_string": urlencode(filters.as_query())}
    try:
        check_request(filters, action)
    except BulkRefused as refused:
        context["refused"] = str(refused)
        return render(request, "monitoring/bulk_confirm.html", context, status=400)
    as_of = timezone.now()
    runs = targets(filters, action, as_of)
    context.update({
        "label": BulkAction(action).label, "done_word": DONE_WORD[action], "as_of": as_of.isoformat(),
        "matching": count_matching(filters), "eligible": runs.count(),
        "sample": list(runs.select_related("workflow").order_by("-created_at")[:SAMPLE]),
    })
    return render(request, "monitoring/bulk_confirm.html", context)


@login_required
@permission_required("orchestrator.change_run", raise_exception=True)
@require_POST
def start(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    _allowed(request, action)
    filters = RunFilter.from_query(request.POST)
    back = f"{reverse('monitoring:bulk_confirm')}?{_query(filters, action)}"
    as_of = parse_datetime(request.POST.get("as_of", ""))
    expected = request.POST.get("expected", "")
    if as_of is None or not expected.isdigit():
        messages.error(request, "The confirmation is incomplete; check the count again.")
        return redirect(back)
    if timezone.now() - as_of > CONFIRMATION_TTL or as_of > timezone.now():
        messages.error(request, "That confirmation is out of date; check the count again.")
        return redirect(back)
    try:
        operation = request_operation(filters, action, request.user, int(expected), as_of,
                                      request.POST.get("reason", "").strip())
    except BulkRefused as refused:
        messages.error(request, f"Refused: {refused}.")
        return redirect(back)
    messages.success(request, f"Bulk {action} #{operation.pk} started on {operation.total} runs.")
    return redirect("monitoring:bulk_detail", operation_id=operation.pk)


def _query(filters: RunFilter, action: str) -> str:
    query = QueryDict(mutable=True)
    query.update({**filters.as_query(), "action": action})
    return query.urlencode()


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def detail(request: HttpRequest, operation_id: int) -> HttpResponse:
    """The operation's progress; the fragment polls until it ends (then 286 stops it)."""
    operation = get_object_or_404(BulkOperation.objects.select_related("requested_by"), pk=operation_id)
    filters = RunFilter.from_query(QueryDict(operation.query))
    context = {"operation": operation, "filters": filters, "query": operation.query,
               "aftermath": aftermath(operation) if operation.action == BulkAction.REDRIVE else {}}
    if request.htmx and request.GET.get("fragment") == "progress":
        response = render(request, "monitoring/_bulk_progress.html", context)
        if operation.is_finished:
            response.status_code = STOP_POLLING
        return response
    return render(request, "monitoring/bulk_detail.html", context)


@login_required
@permission_required("orchestrator.change_run", raise_exception=True)
@require_POST
def stop(request: HttpRequest, operation_id: int) -> HttpResponse:
    operation = get_object_or_404(BulkOperation, pk=operation_id)
    _allowed(request, operation.action)
    operation = request_stop(operation.pk)
    if operation.is_finished:
        messages.info(request, f"Bulk {operation.action} #{operation.pk} had already ended.")
    else:
        messages.success(request, f"Bulk {operation.action} #{operation.pk} stops after the runs in hand.")
    return redirect("monitoring:bulk_detail", operation_id=operation.pk)
