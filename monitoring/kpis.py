"""KPIs, defined once (DESIGN.md section 6): the one place that says what each figure counts.

A pure read module: pages, charts and ``/metrics`` call it; it never writes. Every count, sum
and percentile is computed by the database, so a report costs a small, fixed number of
queries whatever the number of runs (six for ``kpi_report``, five for ``kpi_series`` whatever
the number of buckets, one for ``state_latency``).

Windows are half-open, ``[start, end)``: a run that finished exactly at ``end`` belongs to the
next window, so consecutive windows never count a run twice.

Which rows each family reads:

- **Run KPIs** (counts, completion, latency, resumes, cost, compensation, budget kills, runs
  per minute) count runs that reached a terminal status (succeeded, failed, cancelled) with
  ``finished_at`` in the window. Without a workflow filter only top-level runs count: a
  sub-workflow run is part of its parent's task, its usage is already charged to its parent
  and its failure already shows in its parent's outcome. With a workflow filter every run of
  that workflow counts, child runs included.
- **Effect KPIs** count the ledger rows (one row is one distinct effect key) of every run,
  child runs included, that finished in the window: a duplicate is judged once its run is over.
- **Step KPIs** (steps per minute, retry rate, queue wait, per-state latency) count attempts of
  every run, child runs included, by the time the attempt finished (or was claimed, for queue
  wait).

- **Approval wait** counts approval decisions made in the window.

Percentiles are ``percentile_cont`` (linear interpolation between the two nearest ranks). On
PostgreSQL it is the database's own ordered-set aggregate (all percentiles of a value from
one sort); elsewhere (SQLite has none) the same figure comes from a ``ROW_NUMBER()`` window
and a count per group, in one query. Durations are seconds, exact to the microsecond on both
databases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import (
    Count,
    DecimalField,
    F,
    FloatField,
    Func,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Greatest

from orchestrator.models import (
    AttemptKind,
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    FailureMode,
    Run,
    RunStatus,
    StepAttempt,
    Workflow,
    WorkflowVersion,
)

from .kpi_figures import (
    KpiPoint,
    KpiReport,
    StateLatency,
    VersionFilter,
    WorkflowFilter,
    point_from,
    report_from,
)
from .percentiles import BucketIndex, DateBin, PercentileCont, SecondsBetween, percentiles, seconds_between

__all__ = [
    "KpiPoint",
    "KpiReport",
    "PercentileCont",
    "SecondsBetween",
    "StateLatency",
    "change",
    "kpi_report",
    "kpi_series",
    "percentiles",
    "previous_window",
    "seconds_between",
    "state_latency",
]

TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPENSATED)
# Effects whose undoing was at least started: the run compensated (or tried to).
COMPENSATION_EFFECT_STATUSES = (EffectStatus.COMPENSATING, EffectStatus.COMPENSATED, EffectStatus.COMPENSATION_FAILED)
# Attempts whose duration says how long the state took; lost and cancelled attempts end when
# the sweeper or a canceller notices, which says nothing about the state.
TIMED_ATTEMPT_STATUSES = (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.TIMED_OUT)
MAX_BUCKETS = 1000
# Windows at least this long are read from the hourly rollups (rolled_kpis.py); shorter ones
# are exact, from the runs and attempts themselves.
ROLLED_SPAN = timedelta(days=2)
COST_FIELD = DecimalField(max_digits=20, decimal_places=6)



# --- filters and windows ---------------------------------------------------------------------


def previous_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window of the same length just before ``[start, end)``: what "change" compares to."""
    return start - (end - start), start


def change(current: float | Decimal | None, previous: float | Decimal | None) -> float | None:
    """Relative change from ``previous`` to ``current`` (0.25 is +25 %); ``None`` when either
    is missing or ``previous`` is 0 (no meaningful ratio)."""
    if current is None or previous is None or previous == 0:
        return None
    return float((Decimal(str(current)) - Decimal(str(previous))) / Decimal(str(previous)))


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("KPI windows take aware datetimes")
    if end <= start:
        raise ValueError(f"a KPI window must end after it starts ({start} .. {end})")


def run_scope(workflow: WorkflowFilter, version: VersionFilter, prefix: str = "") -> Q:
    """Rows of runs of ``workflow`` (a name or a Workflow) and ``version`` (a number, which
    needs the workflow, or a WorkflowVersion). ``prefix`` reaches the run from another model."""
    q = Q()
    if isinstance(workflow, Workflow):
        q &= Q(**{f"{prefix}workflow_id": workflow.pk})
    elif workflow is not None:
        q &= Q(**{f"{prefix}workflow__name": workflow})
    if isinstance(version, WorkflowVersion):
        q &= Q(**{f"{prefix}version_id": version.pk})
    elif version is not None:
        if workflow is None:
            raise ValueError("a version number needs its workflow")
        q &= Q(**{f"{prefix}version__number": version})
    return q


def top_level(workflow: WorkflowFilter, version: VersionFilter) -> Q:
    """Run KPIs without a workflow filter count tasks people started, not their sub-runs."""
    return Q(parent__isnull=True) if workflow is None and version is None else Q()


def _finished_in(start: datetime, end: datetime, prefix: str = "") -> Q:
    return Q(**{f"{prefix}status__in": TERMINAL, f"{prefix}finished_at__gte": start, f"{prefix}finished_at__lt": end})


# --- KPI families: each one query, grouped by ``group`` (or not) --------------------------------


def run_wall_seconds() -> Any:
    """A run's latency: created -> finished."""
    return seconds_between(F("created_at"), F("finished_at"))


def run_net_seconds() -> Any:
    """A run's latency without the time it waited for people."""
    return Greatest(run_wall_seconds() - F("human_wait_seconds"), Value(0.0), output_field=FloatField())


def queue_wait_seconds() -> Any:
    """An attempt's wait for a worker: claimed minus due (``not_before`` after a backoff or a
    timer, else ``scheduled_at``: a deliberate delay is not time spent waiting)."""
    return Greatest(seconds_between(Coalesce(F("not_before"), F("scheduled_at")), F("claimed_at")), Value(0.0),
                    output_field=FloatField())


def attempt_run_seconds() -> Any:
    """How long an attempt ran: claimed -> finished."""
    return seconds_between(F("claimed_at"), F("finished_at"))


def _by_bucket(group: Any) -> dict[str, Any] | None:
    return None if group is None else {"bucket": group}


def run_aggregates(end: datetime, finished: Q | None = None) -> dict[str, Any]:
    """Counts and sums of terminal runs (``finished``: which of them; all rows by default).
    A run counts as compensated when its saga started before ``end``."""
    finished = finished if finished is not None else Q()
    # Uncorrelated IN subqueries: the database builds each set once (a hash), instead of a
    # lookup per run.
    compensated = Q(
        pk__in=Event.objects.filter(kind=EventKind.COMPENSATION_STARTED, created_at__lt=end).values("run_id")
    ) | Q(pk__in=Effect.objects.filter(status__in=COMPENSATION_EFFECT_STATUSES).values("run_id"))
    resumed = finished & Q(resume_count__gt=0)
    return {
        "finished": Count("pk", filter=finished),
        "succeeded": Count("pk", filter=finished & Q(status=RunStatus.SUCCEEDED)),
        "failed": Count("pk", filter=finished & Q(status=RunStatus.FAILED)),
        "cancelled": Count("pk", filter=finished & Q(status__in=(RunStatus.CANCELLED, RunStatus.COMPENSATED))),
        "resumed": Count("pk", filter=resumed),
        "resumed_succeeded": Count("pk", filter=resumed & Q(status=RunStatus.SUCCEEDED)),
        "budget_kills": Count("pk", filter=finished & Q(failure_mode=FailureMode.COST_EXPLOSION)),
        "compensated": Count("pk", filter=finished & compensated),
        "tokens": Coalesce(Sum("tokens_used", filter=finished), 0),
        "cost": Coalesce(Sum("cost_used", filter=finished), Value(Decimal(0)), output_field=COST_FIELD),
    }


# Ledger rows: one row is one distinct effect key.
EFFECT_AGGREGATES = {
    "effect_keys": Count("pk"),
    "duplicated": Count("pk", filter=Q(duplicates__gt=0)),
    "possible_duplicates": Count("pk", filter=Q(unknown_retries__gt=0)),
    "dedup_hits": Coalesce(Sum("dedup_hits"), 0),
}
# Step attempts. A retry is a new try after a failure (attempt > 1 and not a resume): resumes
# after a lost worker are counted by the resume KPI, not here.
STEP_AGGREGATES = {
    "steps": Count("pk"),
    "retries": Count("pk", filter=Q(attempt__gt=1, resumed_from__isnull=True)),
}


def _run_counts(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime,
    group: Any = None, *, with_started: bool = False,
) -> dict[Any, dict[str, Any]]:
    """Counts and sums over terminal runs finished in the window (see the module docstring)."""
    finished = _finished_in(start, end)
    aggregates = run_aggregates(end, finished)
    runs = Run.objects.filter(run_scope(workflow, version) & top_level(workflow, version)).order_by()
    where = finished
    if with_started:
        started = Q(created_at__gte=start, created_at__lt=end)
        aggregates["started"] = Count("pk", filter=started)
        aggregates["unfinished"] = Count("pk", filter=started & ~Q(status__in=TERMINAL))
        where = finished | started
    runs = runs.filter(where)
    if group is None:
        return {None: runs.aggregate(**aggregates)}
    rows = runs.annotate(kg_bucket=group).values("kg_bucket").annotate(**aggregates)
    return {row["kg_bucket"]: row for row in rows}


def _run_latency(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime,
    ps: Sequence[float], group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Wall time (created -> finished) of succeeded runs, with and without human wait."""
    runs = Run.objects.filter(
        run_scope(workflow, version) & top_level(workflow, version) & _finished_in(start, end),
        status=RunStatus.SUCCEEDED,
    )
    result = percentiles(runs, {"latency": run_wall_seconds(), "latency_net": run_net_seconds()}, ps,
                         _by_bucket(group))
    return {(k[0] if k else None): v for k, v in result.items()}


def _effect_counts(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime, group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Ledger rows of runs that finished in the window; one row is one distinct effect key."""
    effects = Effect.objects.filter(run_scope(workflow, version, "run__") & _finished_in(start, end, "run__"))
    aggregates = EFFECT_AGGREGATES
    effects = effects.order_by()
    if group is None:
        return {None: effects.aggregate(**aggregates)}
    rows = effects.annotate(kg_bucket=group).values("kg_bucket").annotate(**aggregates)
    return {row["kg_bucket"]: row for row in rows}


def _step_counts(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime, group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Step attempts (not compensations) that finished in the window, whatever their outcome."""
    attempts = StepAttempt.objects.filter(
        run_scope(workflow, version, "run__"), kind=AttemptKind.STEP, finished_at__gte=start, finished_at__lt=end
    ).order_by()
    aggregates = STEP_AGGREGATES
    if group is None:
        return {None: attempts.aggregate(**aggregates)}
    rows = attempts.annotate(kg_bucket=group).values("kg_bucket").annotate(**aggregates)
    return {row["kg_bucket"]: row for row in rows}


def _queue_wait(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime,
    ps: Sequence[float], group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Queue wait of every attempt (steps and compensations) claimed in the window."""
    attempts = StepAttempt.objects.filter(
        run_scope(workflow, version, "run__"), claimed_at__gte=start, claimed_at__lt=end
    )
    result = percentiles(attempts, {"queue_wait": queue_wait_seconds()}, ps, _by_bucket(group))
    return {(k[0] if k else None): v for k, v in result.items()}


def approval_wait(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime, ps: Sequence[float],
) -> dict[str, Any]:
    """Decisions made in the window: time from the latest request of the same state in the
    same run to the decision. A decision with no request before it is left out."""
    requested = Event.objects.filter(
        run=OuterRef("run"), kind=EventKind.APPROVAL_REQUESTED, state_name=OuterRef("state_name"),
        created_at__lte=OuterRef("created_at"),
    ).order_by("-created_at", "-id").values("created_at")[:1]
    decisions = Event.objects.filter(
        run_scope(workflow, version, "run__"), kind=EventKind.APPROVAL_DECIDED,
        created_at__gte=start, created_at__lt=end,
    )
    return percentiles(decisions, {"approval_wait": seconds_between(Subquery(requested), F("created_at"))}, ps)[None]


# --- public API ------------------------------------------------------------------------------


def kpi_report(
    start: datetime, end: datetime, *, workflow: WorkflowFilter = None, version: VersionFilter = None,
    exact: bool = False,
) -> KpiReport:
    """All KPIs for ``[start, end)``, overall or for one workflow (name or Workflow) and
    version (number, with the workflow, or a WorkflowVersion). Six queries, whatever the data.

    A window of ROLLED_SPAN or more is read from the hourly rollups (rolled_kpis.py): the same
    counts, percentiles within 1 %, unless ``exact``."""
    _check_window(start, end)
    if not exact and end - start >= ROLLED_SPAN:
        from .rolled_kpis import rolled_report

        return rolled_report(start, end, workflow, version)
    runs = _run_counts(workflow, version, start, end, with_started=True)[None]
    latency = _run_latency(workflow, version, start, end, (0.5, 0.95, 0.99))[None]
    effects = _effect_counts(workflow, version, start, end)[None]
    steps = _step_counts(workflow, version, start, end)[None]
    queue = _queue_wait(workflow, version, start, end, (0.5, 0.95))[None]
    approvals = approval_wait(workflow, version, start, end, (0.5, 0.95))
    return report_from(start, end, workflow, version, runs, latency, effects, steps, queue, approvals)


def bucket_edges(start: datetime, end: datetime, buckets: int | timedelta) -> tuple[list[datetime], dict[str, int]]:
    """Bucket edges and the coefficients of BucketIndex that put a row between the same edges.

    ``buckets`` is a number of equal buckets (edges rounded down to the microsecond, the
    formula below matches that rounding exactly) or a bucket width (the last bucket ends at
    ``end``, so it may be shorter).
    """
    total = (end - start) // timedelta(microseconds=1)
    if isinstance(buckets, timedelta):
        width = buckets // timedelta(microseconds=1)
        if width <= 0:
            raise ValueError("a bucket width must be positive")
        count = math.ceil(total / width)
        offsets = [min(i * width, total) for i in range(count + 1)]
        coefficients = {"a": 1, "b": 0, "c": width}
    else:
        count = int(buckets)
        if count < 1:
            raise ValueError("a series needs at least one bucket")
        # Edge i is floor(total * i / count); offset o lies at or after edge i exactly when
        # i <= (count * o + count - 1) / total, so that floor is the bucket.
        offsets = [total * i // count for i in range(count + 1)]
        coefficients = {"a": count, "b": count - 1, "c": total}
    if count > MAX_BUCKETS:
        raise ValueError(f"a series has at most {MAX_BUCKETS} buckets, not {count}")
    return [start + timedelta(microseconds=o) for o in offsets], coefficients


def kpi_series(
    start: datetime, end: datetime, buckets: int | timedelta, *,
    workflow: WorkflowFilter = None, version: VersionFilter = None, exact: bool = False,
) -> list[KpiPoint]:
    """The main KPIs per bucket of ``[start, end)``, oldest first, empty buckets included.

    One grouped query per KPI family (run counts, run latency, effects, step counts, queue
    wait): five queries, whatever the number of buckets. A row belongs to the bucket its
    timestamp (the run's or attempt's ``finished_at``, the attempt's ``claimed_at`` for queue
    wait) falls in, so each point equals ``kpi_report`` over that bucket.

    A window of ROLLED_SPAN or more, in buckets of whole hours, is read from the hourly rollups
    unless ``exact``: its inner edges fall on whole hours (the first bucket is up to an hour
    longer than the others, the last may be shorter).
    """
    _check_window(start, end)
    if not exact and _rolled(start, end, buckets):
        from .rolled_kpis import rolled_series

        return rolled_series(start, end, buckets, workflow, version)
    edges, coefficients = bucket_edges(start, end, buckets)
    origin = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    binned = isinstance(buckets, timedelta) and connections[Run.objects.db].vendor == "postgresql"

    def bucket(column: str) -> Func:
        if binned:  # rows come back keyed by their bucket's start (an edge), not its index
            return DateBin(F(column), width=buckets, origin=start)
        return BucketIndex(F(column), origin=origin, **coefficients)

    runs = _run_counts(workflow, version, start, end, bucket("finished_at"))
    latency = _run_latency(workflow, version, start, end, (0.5, 0.95, 0.99), bucket("finished_at"))
    effects = _effect_counts(workflow, version, start, end, bucket("run__finished_at"))
    steps = _step_counts(workflow, version, start, end, bucket("finished_at"))
    queue = _queue_wait(workflow, version, start, end, (0.5, 0.95), bucket("claimed_at"))
    points = []
    for i in range(len(edges) - 1):
        key = edges[i] if binned else i
        points.append(point_from(edges[i], edges[i + 1], runs.get(key, {}), latency.get(key, {}),
                                 effects.get(key, {}), steps.get(key, {}), queue.get(key, {})))
    return points


def kpi_report_and_series(
    start: datetime, end: datetime, buckets: timedelta, *, workflow: WorkflowFilter = None,
    version: VersionFilter = None,
) -> tuple[KpiReport, list[KpiPoint]]:
    """``kpi_report`` and ``kpi_series`` of one window; from the hourly rollups the report is the
    sum of the series' buckets, read once."""
    if _rolled(start, end, buckets):
        from .rolled_kpis import rolled_report_and_series

        _check_window(start, end)
        return rolled_report_and_series(start, end, buckets, workflow, version)
    return (kpi_report(start, end, workflow=workflow, version=version),
            kpi_series(start, end, buckets, workflow=workflow, version=version))


def _rolled(start: datetime, end: datetime, buckets: int | timedelta) -> bool:
    """Is this series read from the hourly rollups (a long window in buckets of whole hours)?"""
    return (end - start >= ROLLED_SPAN and isinstance(buckets, timedelta) and buckets > timedelta(0)
            and buckets % timedelta(hours=1) == timedelta(0))


def state_latency(
    start: datetime, end: datetime, *, workflow: WorkflowFilter = None, version: VersionFilter = None,
    exact: bool = False,
) -> list[StateLatency]:
    """p50/p95 of how long each state's step attempts ran (claimed -> finished), for attempts
    that finished in ``[start, end)`` with an outcome of their own (succeeded, failed, timed
    out: not lost or cancelled). Grouped by workflow and state, sorted by both. One query
    (read from the hourly rollups for a window of ROLLED_SPAN or more, unless ``exact``)."""
    _check_window(start, end)
    if not exact and end - start >= ROLLED_SPAN:
        from .rolled_kpis import rolled_state_latency

        return rolled_state_latency(start, end, workflow, version)
    attempts = StepAttempt.objects.filter(
        run_scope(workflow, version, "run__"), kind=AttemptKind.STEP, status__in=TIMED_ATTEMPT_STATUSES,
        claimed_at__isnull=False, finished_at__gte=start, finished_at__lt=end,
    )
    result = percentiles(
        attempts, {"duration": attempt_run_seconds()}, (0.5, 0.95),
        {"workflow": F("run__workflow__name"), "state": F("state_name")},
    )
    return [
        StateLatency(workflow=key[0], state_name=key[1], attempts=v["duration_n"], p50=v["duration_p50"],
                     p95=v["duration_p95"])
        for key, v in sorted(result.items())
    ]
