"""Failure trends: failed runs per failure mode over the window (a chart) and against the
window before (a count and a change per mode). Two grouped queries, whatever the window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from django.db.models import Count, F, QuerySet

from orchestrator.models import Run, RunStatus

from .charts import COUNT, Chart, Series, time_chart
from .kpis import bucket_edges, change, previous_window
from .percentiles import BucketIndex

BUCKETS = 12
DRAWN_MODES = 3  # the most frequent modes get a series each; the rest are summed as "other"


@dataclass(frozen=True)
class ModeTrend:
    failure_mode: str
    runs: int
    previous: int

    @property
    def change(self) -> float | None:
        return change(self.runs, self.previous)

    @property
    def change_words(self) -> str:
        """"up 50 %", "down 20 %", "new" (none before), "gone" (none now) or "same"."""
        if not self.previous:
            return "new" if self.runs else ""
        if not self.runs:
            return "gone"
        ratio = self.change or 0.0
        return "same" if ratio == 0 else f"{'up' if ratio > 0 else 'down'} {abs(ratio) * 100:.0f} %"


@dataclass(frozen=True)
class FailureTrend:
    chart: Chart
    modes: dict[str, ModeTrend]
    previous_total: int


def _failed(start: datetime, end: datetime, workflow: str) -> QuerySet[Run]:
    failed = Run.objects.filter(status=RunStatus.FAILED, finished_at__gte=start, finished_at__lt=end)
    return failed.filter(workflow__name=workflow) if workflow else failed


def failure_trend(start: datetime, end: datetime, *, workflow: str = "") -> FailureTrend:
    edges, coefficients = bucket_edges(start, end, BUCKETS)
    origin = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    rows = (_failed(start, end, workflow)
            .annotate(bucket=BucketIndex(F("finished_at"), origin=origin, **coefficients))
            .values("bucket", "failure_mode").annotate(n=Count("pk")).order_by())
    per_bucket: dict[str, list[int]] = {}
    for row in rows:
        per_bucket.setdefault(row["failure_mode"], [0] * BUCKETS)[min(row["bucket"], BUCKETS - 1)] += row["n"]
    before = dict(_failed(*previous_window(start, end), workflow).values_list("failure_mode")
                  .annotate(n=Count("pk")).order_by())
    totals = {mode: sum(counts) for mode, counts in per_bucket.items()}
    ranked = sorted(totals, key=lambda mode: (-totals[mode], mode))
    series = [Series(mode or "(none)", per_bucket[mode]) for mode in ranked[:DRAWN_MODES]]
    if len(ranked) > DRAWN_MODES:
        series.append(Series("other modes", [sum(per_bucket[m][i] for m in ranked[DRAWN_MODES:])
                                             for i in range(BUCKETS)]))
    if not series:
        series = [Series("failed runs", [0] * BUCKETS)]
    buckets = list(pairwise(edges))
    chart = time_chart("failures-by-mode", "Failed runs by failure mode", buckets, series, unit=COUNT, kind="bar",
                       y_title="failed runs")
    modes = {mode: ModeTrend(mode, totals.get(mode, 0), before.get(mode, 0)) for mode in {*totals, *before}}
    return FailureTrend(chart=chart, modes=modes, previous_total=sum(before.values()))
