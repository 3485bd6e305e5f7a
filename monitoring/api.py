"""The KPI dashboard's figures over the API: every KPI of DESIGN.md section 6 for a window (and
a workflow, and one of its versions), the same figures for the window before, the series the
charts draw and each state's latency. The window is read and the figures computed exactly as
the dashboard does (monitoring.views.dashboards.read_filters, monitoring.kpis), so the API and
the page never disagree. Needs ``orchestrator.view_run``."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Schema

from orchestrator.api.core import ApiError, api, refusals, require
from orchestrator.models import WorkflowVersion

from .kpis import KpiPoint, KpiReport, StateLatency, change, kpi_report, kpi_report_and_series, state_latency
from .views.dashboards import read_filters

# The figures whose change against the window before the dashboard's tiles show.
COMPARED = ("completion_rate", "latency_p50", "latency_p95", "resume_success_rate", "duplicate_effect_rate",
            "cost_per_task", "tokens_per_task", "runs_per_minute", "steps_per_minute", "retry_rate",
            "queue_wait_p95", "compensation_rate", "approval_wait_p50")


class KpiQuery(Schema):
    window: Literal["hour", "day", "week", "custom"] | None = Field(
        default=None, description="the last hour, 24 hours or 7 days (day when left out), or custom: start and end")
    start: str | None = Field(default=None, max_length=40, description="custom window: an ISO date or date-time")
    end: str | None = Field(default=None, max_length=40, description="custom window: an ISO date or date-time")
    workflow: str | None = Field(default=None, max_length=100, description="one workflow's runs only")
    version: int | None = Field(default=None, ge=1, description="one version of that workflow only")


class WindowOut(Schema):
    name: str
    start: datetime
    end: datetime
    bucket_seconds: float = Field(description="the width of each point of the series")


class KpiOut(Schema):
    window: WindowOut
    workflow: str | None
    version: int | None
    report: KpiReport = Field(description="the window's figures: rates are fractions, durations seconds")
    previous: KpiReport = Field(description="the same figures for the window just before, as long")
    changes: dict[str, float | None] = Field(description="relative change from the window before (0.25 is +25 %)")
    series: list[KpiPoint] = Field(description="the main figures per bucket, oldest first (the charts)")
    states: list[StateLatency] = Field(description="how long each state's attempts ran, p50 and p95 seconds")


@api.get("/kpis", response=refusals() | {200: KpiOut}, tags=["kpis"], summary="The KPI dashboard's figures")
def kpis(request: HttpRequest, query: Query[KpiQuery]) -> dict[str, Any]:
    """The dashboard's figures for ``window`` (or ``start`` .. ``end``), overall or for
    ``workflow`` (and ``version``). A bad value is refused (422) naming the parameter."""
    require(request, "orchestrator.view_run")
    versions: dict[str, list[int]] = {}
    for name, number in WorkflowVersion.objects.order_by("workflow__name", "number").values_list(
            "workflow__name", "number"):
        versions.setdefault(name, []).append(number)
    filters = read_filters(request.GET, versions, timezone.now())
    if filters.errors:
        field, message = next(iter(filters.errors.items()))
        raise ApiError(422, "invalid", message, field)
    window = filters.window
    assert window is not None  # read_filters gives a window or an error
    scope = {"workflow": filters.workflow or None, "version": filters.version}
    report, points = kpi_report_and_series(window.start, window.end, window.bucket, **scope)
    before = kpi_report(*window.previous, **scope)
    return {"window": {"name": window.name, "start": window.start, "end": window.end,
                       "bucket_seconds": window.bucket.total_seconds()},
            # As plain data, so the schema's types apply (a rolled-up report may hold 0 for a Decimal).
            "workflow": filters.workflow or None, "version": filters.version, "report": asdict(report),
            "previous": asdict(before),
            "changes": {key: change(getattr(report, key), getattr(before, key)) for key in COMPARED},
            "series": [asdict(point) for point in points],
            "states": [asdict(state) for state in state_latency(window.start, window.end, **scope)]}
