from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from orchestrator.models import Workflow

from ..failures import failure_report
from ..runlist import WINDOWS


@login_required
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
    report = failure_report(now - WINDOWS[window], now + timedelta(seconds=1), now, workflow=workflow)
    return render(request, "monitoring/failures.html", {
        "report": report, "window": window, "workflow": workflow, "workflows": names, "windows": list(WINDOWS),
        "errors": errors,
    }, status=400 if errors else 200)
