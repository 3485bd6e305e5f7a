from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from ..kpis import kpi_report
from ..overview import overview


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """Runs in flight, the last day's KPIs, failures by mode, recent runs, workers alive; for a
    new installation, a button to start each demo."""
    now = timezone.now()
    return render(request, "monitoring/home.html", {
        "overview": overview(now), "kpis": kpi_report(now - timedelta(days=1), now),
    })
