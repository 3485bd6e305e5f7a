from __future__ import annotations

import re
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from orchestrator.engine import breakers
from orchestrator.models import Workflow

from ..failure_trends import failure_trend
from ..failures import acknowledge, failure_report
from ..flow import throttling
from ..runlist import WINDOWS


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def failure_dashboard(request: HttpRequest) -> HttpResponse:
    """Failed runs grouped by mode and by cause, each cluster drilling down to its runs, beside
    what waits for a person: uncertain effects and stuck runs."""
    window = request.GET.get("window", "24h")
    workflow = request.GET.get("workflow", "").strip()
    errors = {}
    if window not in WINDOWS:
        errors["window"] = f"unknown time range {window!r}; use one of {', '.join(WINDOWS)}"
        window = "24h"
    names = list(Workflow.objects.order_by("name").values_list("name", flat=True))
    if workflow and workflow not in names:
        errors["workflow"] = f"no workflow named {workflow!r}"
        workflow = ""
    now = timezone.now()
    start, end = now - WINDOWS[window], now + timedelta(seconds=1)
    report = failure_report(start, end, now, workflow=workflow)
    return render(request, "monitoring/failures.html", {
        "report": report, "trend": failure_trend(start, end, workflow=workflow), "window": window,
        "throttled": throttling(start, end),
        "tripped": [state for state in breakers.states() if state.state != "closed"],
        "workflow": workflow, "workflows": names, "windows": list(WINDOWS),
        "errors": errors,
    }, status=400 if errors else 200)


@login_required
@permission_required("orchestrator.change_run", raise_exception=True)
@require_POST
def acknowledge_cluster(request: HttpRequest) -> HttpResponse:
    """An operator acknowledges a cluster with a note saying what is being done about it."""
    workflow = request.POST.get("workflow", "")
    fingerprint = request.POST.get("fingerprint", "")
    note = request.POST.get("note", "").strip()[:2000]
    if not note or not re.fullmatch(r"[0-9a-f]{16}", fingerprint):
        messages.error(request, "An acknowledgement needs a note and a cluster.")
    else:
        try:
            acknowledge(workflow, fingerprint, note, request.user)
        except Workflow.DoesNotExist:
            messages.error(request, f"No workflow named {workflow!r}.")
        else:
            messages.success(request, f"Cluster of {workflow} acknowledged.")
    return redirect(f"{reverse('monitoring:failures')}?{request.POST.get('query', '')}")
