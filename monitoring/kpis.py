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
from dataclasses import dataclass
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
COST_FIELD = DecimalField(max_digits=20, decimal_places=6)

WorkflowFilter = str | Workflow | None
VersionFilter = int | WorkflowVersion | None


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


def _run_scope(workflow: WorkflowFilter, version: VersionFilter, prefix: str = "") -> Q:
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


def _top_level(workflow: WorkflowFilter, version: VersionFilter) -> Q:
    """Run KPIs without a workflow filter count tasks people started, not their sub-runs."""
    return Q(parent__isnull=True) if workflow is None and version is None else Q()


def _finished_in(start: datetime, end: datetime, prefix: str = "") -> Q:
    return Q(**{f"{prefix}status__in": TERMINAL, f"{prefix}finished_at__gte": start, f"{prefix}finished_at__lt": end})


def _rate(numerator: int | None, denominator: int | None) -> float | None:
    return numerator / denominator if denominator else None


def _per_minute(count: int, start: datetime, end: datetime) -> float:
    return count / ((end - start).total_seconds() / 60)


def _per_task(total: Any, succeeded: int) -> Any:
    if not succeeded:
        return None
    if isinstance(total, Decimal):
        return (total / succeeded).quantize(Decimal("0.000001"))
    return total / succeeded


# --- KPI families: each one query, grouped by ``group`` (or not) --------------------------------


def _by_bucket(group: Any) -> dict[str, Any] | None:
    return None if group is None else {"bucket": group}


def _run_counts(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime,
    group: Any = None, *, with_started: bool = False,
) -> dict[Any, dict[str, Any]]:
    """Counts and sums over terminal runs finished in the window (see the module docstring)."""
    finished = _finished_in(start, end)
    # Uncorrelated IN subqueries: the database builds each set once (a hash), instead of a
    # lookup per run.
    compensated = Q(
        pk__in=Event.objects.filter(kind=EventKind.COMPENSATION_STARTED, created_at__lt=end).values("run_id")
    ) | Q(pk__in=Effect.objects.filter(status__in=COMPENSATION_EFFECT_STATUSES).values("run_id"))
    resumed = finished & Q(resume_count__gt=0)
    aggregates: dict[str, Any] = {
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
    runs = Run.objects.filter(_run_scope(workflow, version) & _top_level(workflow, version)).order_by()
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
        _run_scope(workflow, version) & _top_level(workflow, version) & _finished_in(start, end),
        status=RunStatus.SUCCEEDED,
    )
    wall = seconds_between(F("created_at"), F("finished_at"))
    net = Greatest(wall - F("human_wait_seconds"), Value(0.0), output_field=FloatField())
    result = percentiles(runs, {"latency": wall, "latency_net": net}, ps, _by_bucket(group))
    return {(k[0] if k else None): v for k, v in result.items()}


def _effect_counts(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime, group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Ledger rows of runs that finished in the window; one row is one distinct effect key."""
    effects = Effect.objects.filter(_run_scope(workflow, version, "run__") & _finished_in(start, end, "run__"))
    aggregates = {
        "effect_keys": Count("pk"),
        "duplicated": Count("pk", filter=Q(duplicates__gt=0)),
        "possible_duplicates": Count("pk", filter=Q(unknown_retries__gt=0)),
        "dedup_hits": Coalesce(Sum("dedup_hits"), 0),
    }
    effects = effects.order_by()
    if group is None:
        return {None: effects.aggregate(**aggregates)}
    rows = effects.annotate(kg_bucket=group).values("kg_bucket").annotate(**aggregates)
    return {row["kg_bucket"]: row for row in rows}


def _step_counts(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime, group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Step attempts (not compensations) that finished in the window, whatever their outcome.

    A retry is a new try after a failure (attempt > 1 and not a resume): resumes after a lost
    worker are counted by the resume KPI, not here.
    """
    attempts = StepAttempt.objects.filter(
        _run_scope(workflow, version, "run__"), kind=AttemptKind.STEP, finished_at__gte=start, finished_at__lt=end
    ).order_by()
    aggregates = {
        "steps": Count("pk"),
        "retries": Count("pk", filter=Q(attempt__gt=1, resumed_from__isnull=True)),
    }
    if group is None:
        return {None: attempts.aggregate(**aggregates)}
    rows = attempts.annotate(kg_bucket=group).values("kg_bucket").annotate(**aggregates)
    return {row["kg_bucket"]: row for row in rows}


def _queue_wait(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime,
    ps: Sequence[float], group: Any = None,
) -> dict[Any, dict[str, Any]]:
    """Claimed minus due, for every attempt (steps and compensations) claimed in the window.

    "Due" is ``not_before`` when the attempt waited on a backoff or a timer, else
    ``scheduled_at``: a deliberate delay is not time spent waiting for a worker.
    """
    attempts = StepAttempt.objects.filter(
        _run_scope(workflow, version, "run__"), claimed_at__gte=start, claimed_at__lt=end
    )
    wait = Greatest(
        seconds_between(Coalesce(F("not_before"), F("scheduled_at")), F("claimed_at")), Value(0.0),
        output_field=FloatField(),
    )
    result = percentiles(attempts, {"queue_wait": wait}, ps, _by_bucket(group))
    return {(k[0] if k else None): v for k, v in result.items()}


def _approval_wait(
    workflow: WorkflowFilter, version: VersionFilter, start: datetime, end: datetime, ps: Sequence[float],
) -> dict[str, Any]:
    """Decisions made in the window: time from the latest request of the same state in the
    same run to the decision. A decision with no request before it is left out."""
    requested = Event.objects.filter(
        run=OuterRef("run"), kind=EventKind.APPROVAL_REQUESTED, state_name=OuterRef("state_name"),
        created_at__lte=OuterRef("created_at"),
    ).order_by("-created_at", "-id").values("created_at")[:1]
    decisions = Event.objects.filter(
        _run_scope(workflow, version, "run__"), kind=EventKind.APPROVAL_DECIDED,
        created_at__gte=start, created_at__lt=end,
    )
    return percentiles(decisions, {"approval_wait": seconds_between(Subquery(requested), F("created_at"))}, ps)[None]


# --- public API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiReport:
    """Every KPI of DESIGN.md section 6 for one window (``[start, end)``) and filter.

    Rates are fractions (0..1) and ``None`` when their denominator is 0; percentiles are
    seconds and ``None`` when nothing was measured; counts and totals are 0 then.
    """

    start: datetime
    end: datetime
    workflow: str | None
    version: int | None
    # Terminal runs finished in the window (top-level only without a workflow filter).
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    # Runs created in the window, and those of them that have not reached a terminal status.
    started: int
    unfinished: int
    completion_rate: float | None  # succeeded / finished
    # Wall time (created -> finished) of succeeded runs, and the same minus human_wait_seconds.
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_net_p50: float | None
    latency_net_p95: float | None
    latency_net_p99: float | None
    resumed: int  # finished runs that resumed at least once after a lost worker
    resumed_succeeded: int
    resume_success_rate: float | None  # resumed_succeeded / resumed
    # Effects of runs (child runs too) finished in the window.
    effect_keys: int
    duplicated_effects: int  # keys executed more than once (Effect.duplicates > 0)
    duplicate_effect_rate: float | None  # duplicated_effects / effect_keys
    dedup_hits: int  # re-executions the ledger prevented
    possible_duplicates: int  # keys re-executed after an outcome nobody knew (unknown_retries > 0)
    # Usage of every attempt of the finished runs (failed ones too), per succeeded run.
    tokens: int
    cost: Decimal
    tokens_per_task: float | None
    cost_per_task: Decimal | None
    runs_per_minute: float  # finished / window minutes
    steps_finished: int  # step attempts (any outcome) finished in the window, child runs too
    steps_per_minute: float
    retries: int  # step attempts finished in the window that retried a failure (not resumes)
    retry_rate: float | None  # retries / steps_finished
    attempts_claimed: int  # attempts (steps and compensations) claimed in the window
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    compensated: int  # finished runs whose saga started (event or compensated effect)
    compensation_rate: float | None  # compensated / finished
    budget_kills: int  # finished runs failed as cost_explosion
    budget_kill_rate: float | None  # budget_kills / finished
    approvals_decided: int  # approval decisions in the window matched to their request
    approval_wait_p50: float | None
    approval_wait_p95: float | None

    @property
    def by_status(self) -> dict[str, int]:
        return {RunStatus.SUCCEEDED: self.succeeded, RunStatus.FAILED: self.failed,
                RunStatus.CANCELLED: self.cancelled}


@dataclass(frozen=True)
class KpiPoint:
    """The main KPIs for one bucket ``[start, end)`` of a series, same definitions as KpiReport."""

    start: datetime
    end: datetime
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    completion_rate: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_net_p50: float | None
    latency_net_p95: float | None
    resume_success_rate: float | None
    effect_keys: int
    duplicated_effects: int
    duplicate_effect_rate: float | None
    dedup_hits: int
    tokens_per_task: float | None
    cost_per_task: Decimal | None
    runs_per_minute: float
    steps_finished: int
    steps_per_minute: float
    retry_rate: float | None
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    compensation_rate: float | None
    budget_kills: int


@dataclass(frozen=True)
class StateLatency:
    """Durations (claimed -> finished) of the attempts of one state."""

    workflow: str
    state_name: str
    attempts: int
    p50: float | None
    p95: float | None


def _workflow_name(workflow: WorkflowFilter) -> str | None:
    return workflow.name if isinstance(workflow, Workflow) else workflow


def _version_number(version: VersionFilter) -> int | None:
    return version.number if isinstance(version, WorkflowVersion) else version


def kpi_report(
    start: datetime, end: datetime, *, workflow: WorkflowFilter = None, version: VersionFilter = None
) -> KpiReport:
    """All KPIs for ``[start, end)``, overall or for one workflow (name or Workflow) and
    version (number, with the workflow, or a WorkflowVersion). Six queries, whatever the data."""
    _check_window(start, end)
    runs = _run_counts(workflow, version, start, end, with_started=True)[None]
    latency = _run_latency(workflow, version, start, end, (0.5, 0.95, 0.99))[None]
    effects = _effect_counts(workflow, version, start, end)[None]
    steps = _step_counts(workflow, version, start, end)[None]
    queue = _queue_wait(workflow, version, start, end, (0.5, 0.95))[None]
    approvals = _approval_wait(workflow, version, start, end, (0.5, 0.95))
    finished, succeeded = runs["finished"], runs["succeeded"]
    return KpiReport(
        start=start, end=end, workflow=_workflow_name(workflow), version=_version_number(version),
        finished=finished, succeeded=succeeded, failed=runs["failed"], cancelled=runs["cancelled"],
        started=runs["started"], unfinished=runs["unfinished"],
        completion_rate=_rate(succeeded, finished),
        latency_p50=latency["latency_p50"], latency_p95=latency["latency_p95"], latency_p99=latency["latency_p99"],
        latency_net_p50=latency["latency_net_p50"], latency_net_p95=latency["latency_net_p95"],
        latency_net_p99=latency["latency_net_p99"],
        resumed=runs["resumed"], resumed_succeeded=runs["resumed_succeeded"],
        resume_success_rate=_rate(runs["resumed_succeeded"], runs["resumed"]),
        effect_keys=effects["effect_keys"], duplicated_effects=effects["duplicated"],
        duplicate_effect_rate=_rate(effects["duplicated"], effects["effect_keys"]),
        dedup_hits=effects["dedup_hits"], possible_duplicates=effects["possible_duplicates"],
        tokens=runs["tokens"], cost=runs["cost"],
        tokens_per_task=_per_task(float(runs["tokens"]), succeeded), cost_per_task=_per_task(runs["cost"], succeeded),
        runs_per_minute=_per_minute(finished, start, end),
        steps_finished=steps["steps"], steps_per_minute=_per_minute(steps["steps"], start, end),
        retries=steps["retries"], retry_rate=_rate(steps["retries"], steps["steps"]),
        attempts_claimed=queue["queue_wait_n"], queue_wait_p50=queue["queue_wait_p50"],
        queue_wait_p95=queue["queue_wait_p95"],
        compensated=runs["compensated"], compensation_rate=_rate(runs["compensated"], finished),
        budget_kills=runs["budget_kills"], budget_kill_rate=_rate(runs["budget_kills"], finished),
        approvals_decided=approvals["approval_wait_n"], approval_wait_p50=approvals["approval_wait_p50"],
        approval_wait_p95=approvals["approval_wait_p95"],
    )


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
    workflow: WorkflowFilter = None, version: VersionFilter = None,
) -> list[KpiPoint]:
    """The main KPIs per bucket of ``[start, end)``, oldest first, empty buckets included.

    One grouped query per KPI family (run counts, run latency, effects, step counts, queue
    wait): five queries, whatever the number of buckets. A row belongs to the bucket its
    timestamp (the run's or attempt's ``finished_at``, the attempt's ``claimed_at`` for queue
    wait) falls in, so each point equals ``kpi_report`` over that bucket.
    """
    _check_window(start, end)
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
        b_start, b_end = edges[i], edges[i + 1]
        key = b_start if binned else i
        r = runs.get(key, {})
        lat, eff, st, q = latency.get(key, {}), effects.get(key, {}), steps.get(key, {}), queue.get(key, {})
        finished, succeeded = r.get("finished", 0), r.get("succeeded", 0)
        n_steps = st.get("steps", 0)
        points.append(KpiPoint(
            start=b_start, end=b_end, finished=finished, succeeded=succeeded, failed=r.get("failed", 0),
            cancelled=r.get("cancelled", 0), completion_rate=_rate(succeeded, finished),
            latency_p50=lat.get("latency_p50"), latency_p95=lat.get("latency_p95"),
            latency_p99=lat.get("latency_p99"), latency_net_p50=lat.get("latency_net_p50"),
            latency_net_p95=lat.get("latency_net_p95"),
            resume_success_rate=_rate(r.get("resumed_succeeded", 0), r.get("resumed", 0)),
            effect_keys=eff.get("effect_keys", 0), duplicated_effects=eff.get("duplicated", 0),
            duplicate_effect_rate=_rate(eff.get("duplicated", 0), eff.get("effect_keys", 0)),
            dedup_hits=eff.get("dedup_hits", 0),
            tokens_per_task=_per_task(float(r.get("tokens", 0)), succeeded),
            cost_per_task=_per_task(r.get("cost", Decimal(0)), succeeded),
            runs_per_minute=_per_minute(finished, b_start, b_end),
            steps_finished=n_steps, steps_per_minute=_per_minute(n_steps, b_start, b_end),
            retry_rate=_rate(st.get("retries", 0), n_steps),
            queue_wait_p50=q.get("queue_wait_p50"), queue_wait_p95=q.get("queue_wait_p95"),
            compensation_rate=_rate(r.get("compensated", 0), finished), budget_kills=r.get("budget_kills", 0),
        ))
    return points


def state_latency(
    start: datetime, end: datetime, *, workflow: WorkflowFilter = None, version: VersionFilter = None
) -> list[StateLatency]:
    """p50/p95 of how long each state's step attempts ran (claimed -> finished), for attempts
    that finished in ``[start, end)`` with an outcome of their own (succeeded, failed, timed
    out: not lost or cancelled). Grouped by workflow and state, sorted by both. One query."""
    _check_window(start, end)
    attempts = StepAttempt.objects.filter(
        _run_scope(workflow, version, "run__"), kind=AttemptKind.STEP, status__in=TIMED_ATTEMPT_STATUSES,
        claimed_at__isnull=False, finished_at__gte=start, finished_at__lt=end,
    )
    result = percentiles(
        attempts, {"duration": seconds_between(F("claimed_at"), F("finished_at"))}, (0.5, 0.95),
        {"workflow": F("run__workflow__name"), "state": F("state_name")},
    )
    return [
        StateLatency(workflow=key[0], state_name=key[1], attempts=v["duration_n"], p50=v["duration_p50"],
                     p95=v["duration_p95"])
        for key, v in sorted(result.items())
    ]
