"""What the home page shows, read in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce

from orchestrator.engine import workers
from orchestrator.models import Run, RunStatus, Workflow, WorkflowVersion
from orchestrator.models.runs import ACTIVE_RUN_STATUSES, TERMINAL_RUN_STATUSES


@dataclass(frozen=True)
class Overview:
    in_flight: list[Run]
    in_flight_count: int
    recent: list[Run]
    failures_by_mode: list[dict[str, Any]]
    workers: list[Any]
    total_runs: int
    workflows: list[Workflow]


def overview(now: datetime, window: timedelta = timedelta(days=1)) -> Overview:
    active = Run.objects.filter(status__in=ACTIVE_RUN_STATUSES)
    linked = ("workflow", "version", "started_by")
    failures = (Run.objects.filter(status=RunStatus.FAILED, finished_at__gte=now - window)
                .values("failure_mode").annotate(runs=Count("pk")).order_by("-runs", "failure_mode"))
    return Overview(
        in_flight=list(active.select_related(*linked).order_by("-created_at")[:10]),
        in_flight_count=active.count(),
        recent=list(Run.objects.select_related(*linked).order_by("-created_at")[:10]),
        failures_by_mode=list(failures),
        workers=workers.alive(now),
        total_runs=Run.objects.count(),
        workflows=list(Workflow.objects.annotate(published=Count("versions"))
                       .filter(published__gt=0).order_by("name")),
    )


def _count(runs: Any) -> Subquery:
    return Subquery(runs.filter(workflow=OuterRef("pk")).order_by().values("workflow")
                    .annotate(n=Count("pk")).values("n"), output_field=IntegerField())


def workflow_rows(now: datetime) -> list[Workflow]:
    """Each workflow with its latest version number and its runs of the last day (one query;
    subqueries, so 100,000 runs are counted by index, not joined row by row)."""
    day = Run.objects.filter(created_at__gte=now - timedelta(days=1))
    return list(Workflow.objects.annotate(
        latest=Subquery(WorkflowVersion.objects.filter(workflow=OuterRef("pk")).order_by("-number")
                        .values("number")[:1]),
        runs_day=Coalesce(_count(day), 0),
        succeeded_day=Coalesce(_count(day.filter(status=RunStatus.SUCCEEDED)), 0),
        finished_day=Coalesce(_count(day.filter(status__in=TERMINAL_RUN_STATUSES)), 0),
    ).order_by("name"))
