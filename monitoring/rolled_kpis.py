"""KPIs of long windows, read from the hourly rollups (rollups.py) instead of every row.

A window ``[start, end)`` reads the stored hours it covers whole, and computes the rest from
the live rows with the same function a rollup pass uses: the part before its first whole hour,
the hours after the last rolled one (the current hour, and any the passes have not reached),
and the hours a redrive changed since they were rolled. The figures are the same families as
``kpis.kpi_report`` (same rows, same timestamps): counts and sums equal the exact ones,
percentiles are read from histograms (within 1 %). Runs started in the window and approval
waits are always exact (one query each).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, models
from django.db.models import Count, F, Min, Q, QuerySet, Sum, Value

from orchestrator.models import Run, Workflow

from . import histograms
from .histograms import Histogram
from .kpi_figures import KpiPoint, KpiReport, StateLatency, VersionFilter, WorkflowFilter, point_from, report_from
from .kpis import EFFECT_AGGREGATES, STEP_AGGREGATES, TERMINAL, approval_wait, run_scope, top_level
from .models import KpiHour, RollupCursor, StateHour
from .percentiles import BucketIndex
from .rollups import (
    COUNTS,
    HISTOGRAMS,
    HOUR,
    RUN_COUNTS,
    ceil_hour,
    compute,
    compute_states,
    empty_row,
    floor_hour,
    stale_hours,
)


@dataclass
class Covered:
    """What a window reads from storage: whole rolled hours ``[start, end)`` minus ``stale``."""

    start: datetime
    end: datetime
    stale: list[datetime]

    def raw_ranges(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The parts of ``[start, end)`` computed from the live rows."""
        ranges = [(a, b) for a, b in ((start, self.start), (self.end, end)) if a < b]
        return ranges + [(hour, hour + HOUR) for hour in self.stale]

    def stored(self, model: type[models.Model], scope: Q) -> QuerySet[Any]:
        return model.objects.filter(scope, hour__gte=self.start, hour__lt=self.end).exclude(
            hour__in=self.stale).order_by()


def _covered(start: datetime, end: datetime, *, redrives: bool = True) -> Covered:
    """The rolled hours of the window; with ``redrives``, those a redrive changed since they
    were rolled up are left out (read live instead)."""
    lo, hi = ceil_hour(start), floor_hour(end)
    cursor = RollupCursor.objects.filter(pk=1).values_list("rolled_from", "rolled_through").first()
    if cursor is None or cursor[0] is None or cursor[1] is None or max(lo, cursor[0]) >= min(hi, cursor[1]):
        return Covered(hi, hi, [])
    covered = Covered(max(lo, cursor[0]), min(hi, cursor[1]), [])
    if redrives and (touched := stale_hours(covered.start, covered.end)):
        rolled_at = dict(KpiHour.objects.filter(hour__in=touched).order_by().values("hour").annotate(
            first=Min("rolled_at")).values_list("hour", "first"))
        covered.stale = stale_hours(covered.start, covered.end, rolled_at=rolled_at)
    return covered


def summed_histograms(rows: QuerySet[Any], field: str, *groups: Any) -> dict[Any, Histogram]:
    """The histograms in ``field`` of ``rows`` added up bucket by bucket inside the database, per
    value of ``groups`` (expressions or field names; the key is the value, or a tuple of them,
    or None without groups): one query that returns a row per group and bucket key."""
    names = [f"kg_group{i}" for i in range(len(groups))] or ["kg_group0"]
    inner = rows.annotate(**dict(zip(names, groups or [Value(0)], strict=True))).values(*names, field)
    sql, params = inner.query.sql_with_params()
    connection = connections[rows.db]
    if connection.vendor == "postgresql":
        pairs, number = f"jsonb_each_text(kg_rows.{field})", "CAST(kg_pair.value AS BIGINT)"
    else:
        pairs, number = f"json_each(kg_rows.{field})", "kg_pair.value"
    columns = ", ".join(f"kg_rows.{name}" for name in names)
    query = (f"SELECT {columns}, kg_pair.key, SUM({number}) FROM ({sql}) kg_rows, {pairs} kg_pair "
             f"GROUP BY {columns}, kg_pair.key")
    found: dict[Any, Histogram] = {}
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        for *key, bucket, n in cursor.fetchall():
            found.setdefault(None if not groups else key[0] if len(groups) == 1 else tuple(key), {})[bucket] = int(n)
    return found


def _stored_families(covered: Covered, scope: Q, top_only: bool, group: Any = None) -> dict[Any, dict[str, Any]]:
    """Each KPI family's stored figures (per ``group``): sums in one query, each histogram in one."""
    if covered.start >= covered.end:
        return {}
    rows = covered.stored(KpiHour, scope)
    runs_only = Q(child=False) if top_only else Q()
    sums = {name: Sum(name, filter=runs_only) for name in RUN_COUNTS}
    sums.update({name: Sum(name) for name in (*EFFECT_AGGREGATES, *STEP_AGGREGATES)})
    if group is None:
        totals = {None: rows.aggregate(**sums)}
    else:
        totals = {row["kg_group"]: row for row in rows.annotate(kg_group=group).values("kg_group").annotate(**sums)}
    found = {key: {name: value or 0 for name, value in figures.items() if name != "kg_group"}
             for key, figures in totals.items()}
    for name, subset in (("latency", rows.filter(runs_only)), ("latency_net", rows.filter(runs_only)),
                         ("queue_wait", rows)):
        for key, histogram in summed_histograms(subset, name, *([group] if group is not None else [])).items():
            found.setdefault(key, {name: 0 for name in COUNTS})[name] = histogram
    for figures in found.values():
        for name in HISTOGRAMS:
            figures.setdefault(name, {})
    return found


def _add(total: dict[str, Any], figures: dict[str, Any]) -> None:
    for name in COUNTS:
        total[name] += figures[name]
    for name in HISTOGRAMS:
        total[name] = histograms.merge([total[name], figures[name]])


def _live_rows(covered: Covered, start: datetime, end: datetime, workflow: WorkflowFilter, version: VersionFilter,
               top_only: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """(hour, figures) computed from the live rows for the parts of the window not stored; with
    ``top_only``, a sub-run's row keeps only the families that count sub-runs."""
    computed = compute(covered.raw_ranges(start, end), run_scope(workflow, version),
                       run_scope(workflow, version, "run__"))
    found = []
    for (hour, _, _, child), figures in computed.items():
        if top_only and child:
            figures = {**figures, **{name: 0 for name in RUN_COUNTS}, "latency": {}, "latency_net": {}}
        found.append((max(hour, start), figures))
    return found


def _families(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The keys kpis.report_from and point_from read, from summed figures."""
    latencies = histograms.percentiles(figures["latency"], (0.5, 0.95, 0.99))
    nets = histograms.percentiles(figures["latency_net"], (0.5, 0.95, 0.99))
    queue = figures["queue_wait"]
    return {
        "runs": {name: figures[name] for name in RUN_COUNTS},
        "latency": {"latency_n": histograms.count(figures["latency"]), **dict(zip(
            ("latency_p50", "latency_p95", "latency_p99"), latencies, strict=True)), **dict(zip(
                ("latency_net_p50", "latency_net_p95", "latency_net_p99"), nets, strict=True))},
        "effects": {name: figures[name] for name in EFFECT_AGGREGATES},
        "steps": {name: figures[name] for name in STEP_AGGREGATES},
        "queue": {"queue_wait_n": histograms.count(queue), **dict(zip(
            ("queue_wait_p50", "queue_wait_p95"), histograms.percentiles(queue, (0.5, 0.95)), strict=True))},
    }


def _report(start: datetime, end: datetime, workflow: WorkflowFilter, version: VersionFilter,
            total: dict[str, Any]) -> KpiReport:
    families = _families(total)
    started = Q(created_at__gte=start, created_at__lt=end)
    families["runs"].update(Run.objects.filter(
        run_scope(workflow, version) & top_level(workflow, version), started).aggregate(
        started=Count("pk"), unfinished=Count("pk", filter=~Q(status__in=TERMINAL))))
    approvals = approval_wait(workflow, version, start, end, (0.5, 0.95))
    return report_from(start, end, workflow, version, families["runs"], families["latency"], families["effects"],
                       families["steps"], families["queue"], approvals)


def rolled_report(start: datetime, end: datetime, workflow: WorkflowFilter, version: VersionFilter) -> KpiReport:
    """kpis.kpi_report for a long window. Thirteen queries at most."""
    top_only = workflow is None and version is None
    covered = _covered(start, end)
    total = empty_row()
    for figures in _stored_families(covered, run_scope(workflow, version), top_only).values():
        _add(total, figures)
    for _, figures in _live_rows(covered, start, end, workflow, version, top_only):
        _add(total, figures)
    return _report(start, end, workflow, version, total)


def series_edges(start: datetime, end: datetime, width: timedelta) -> list[datetime]:
    """Bucket edges whose inner ones fall on whole hours, so that every rolled hour lies in
    one bucket: the first bucket runs to the first whole hour plus ``width``."""
    edges = [start]
    edge = ceil_hour(start) + width
    while edge < end:
        edges.append(edge)
        edge += width
    edges.append(end)
    return edges


def _bucket_totals(start: datetime, end: datetime, width: timedelta, workflow: WorkflowFilter,
                   version: VersionFilter) -> tuple[list[datetime], list[dict[str, Any]]]:
    edges = series_edges(start, end, width)
    top_only = workflow is None and version is None
    covered = _covered(start, end)
    totals = [empty_row() for _ in edges[:-1]]
    last = len(totals) - 1
    # Bucket k >= 1 starts at ceil_hour(start) + k * width; stored hours are never before it.
    index = BucketIndex(F("hour"), origin=round(ceil_hour(start).timestamp() * 1_000_000), a=1, b=0,
                        c=width // timedelta(microseconds=1))
    for k, figures in _stored_families(covered, run_scope(workflow, version), top_only, index).items():
        _add(totals[min(k, last)], figures)
    for hour, figures in _live_rows(covered, start, end, workflow, version, top_only):
        _add(totals[min(max(bisect_right(edges, hour) - 1, 0), last)], figures)
    return edges, totals


def _points(edges: list[datetime], totals: list[dict[str, Any]]) -> list[KpiPoint]:
    points = []
    for i, figures in enumerate(totals):
        f = _families(figures)
        points.append(point_from(edges[i], edges[i + 1], f["runs"], f["latency"], f["effects"], f["steps"],
                                 f["queue"]))
    return points


def rolled_series(start: datetime, end: datetime, width: timedelta, workflow: WorkflowFilter,
                  version: VersionFilter) -> list[KpiPoint]:
    """kpis.kpi_series for a long window in buckets of whole hours. Eleven queries at most."""
    return _points(*_bucket_totals(start, end, width, workflow, version))


def rolled_report_and_series(start: datetime, end: datetime, width: timedelta, workflow: WorkflowFilter,
                             version: VersionFilter) -> tuple[KpiReport, list[KpiPoint]]:
    """Both at once: the report is the sum of the series' buckets (two queries more than the series)."""
    edges, totals = _bucket_totals(start, end, width, workflow, version)
    total = empty_row()
    for figures in totals:
        _add(total, figures)
    return _report(start, end, workflow, version, total), _points(edges, totals)


def rolled_state_latency(start: datetime, end: datetime, workflow: WorkflowFilter, version: VersionFilter,
                         ) -> list[StateLatency]:
    """kpis.state_latency for a long window. Four queries at most."""
    # Attempts never leave their hour (a redrive adds new ones): no stored hour goes stale.
    covered = _covered(start, end, redrives=False)
    merged: dict[tuple[int, str], Histogram] = {}
    if covered.start < covered.end:
        stored = covered.stored(StateHour, run_scope(workflow, version))
        merged.update(summed_histograms(stored, "durations", F("workflow_id"), F("state_name")))
    for (_, workflow_id, _, state), durations in compute_states(
            covered.raw_ranges(start, end), run_scope(workflow, version, "run__")).items():
        merged[(workflow_id, state)] = histograms.merge([merged.get((workflow_id, state), {}), durations])
    names = dict(Workflow.objects.filter(pk__in={key[0] for key in merged}).values_list("pk", "name"))
    found = []
    for (workflow_id, state), total in merged.items():
        p50, p95 = histograms.percentiles(total, (0.5, 0.95))
        found.append(StateLatency(workflow=names[workflow_id], state_name=state, attempts=histograms.count(total),
                                  p50=p50, p95=p95))
    return sorted(found, key=lambda s: (s.workflow, s.state_name))
