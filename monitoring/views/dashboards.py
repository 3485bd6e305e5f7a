"""The KPI dashboard: every KPI of DESIGN.md section 6 for a window, against the window before.

The window, workflow and version live in the query string (``?window=day&workflow=research``,
or ``?window=custom&start=2025-01-01T00:00&end=2025-01-02T00:00``), so a view can be shared; a
bad value is answered 400 with a message saying what to fix, never a 500.

The page costs a fixed number of queries whatever the data: two reports (this window and the
previous one, six each), one series (five, whatever the number of buckets), one per-state
latency query, plus the filters' choices and whether any run exists at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_safe

from orchestrator.models import Run, WorkflowVersion

from ..charts import DURATION, MONEY, PER_MINUTE, PERCENT, Chart, Series, per_minute, span_words, time_chart
from ..kpis import (
    ROLLED_SPAN,
    KpiPoint,
    KpiReport,
    change,
    kpi_report,
    kpi_report_and_series,
    previous_window,
    state_latency,
)
from ..templatetags.ratchet_ui import duration, money, percent

# Preset windows: length and bucket width (the width divides the length).
PRESETS = {
    "hour": (timedelta(hours=1), timedelta(minutes=5)),
    "day": (timedelta(days=1), timedelta(hours=1)),
    "week": (timedelta(days=7), timedelta(hours=6)),
}
PRESET_WORDS = {"hour": "last hour", "day": "last 24 hours", "week": "last 7 days"}
DEFAULT_WINDOW = "day"
# Custom windows: the smallest of these widths that keeps the chart within MAX_BUCKETS buckets.
BUCKET_WIDTHS = [timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 180, 360, 720, 1440, 10080)]
MAX_BUCKETS = 48
MAX_SPAN = timedelta(days=366)
MIN_SPAN = timedelta(minutes=1)


@dataclass
class Window:
    name: str  # "hour", "day", "week" or "custom"
    start: datetime
    end: datetime
    bucket: timedelta

    @property
    def previous(self) -> tuple[datetime, datetime]:
        return previous_window(self.start, self.end)

    @property
    def words(self) -> str:
        return PRESET_WORDS.get(self.name, "this window")

    @property
    def previous_words(self) -> str:
        if self.name in PRESETS:
            return f"the {self.words.replace('last', 'previous')}"
        return f"the {span_words(self.end - self.start)} before"


@dataclass
class Filters:
    window: Window | None
    workflow: str
    version: int | None
    errors: dict[str, str]
    raw: dict[str, str]  # what the user typed, to show it back

    def query(self, **override: str) -> str:
        """This view's query string with ``override`` applied (empty values dropped)."""
        pairs = {"window": self.raw.get("window", ""), "start": self.raw.get("start", ""),
                 "end": self.raw.get("end", ""), "workflow": self.workflow,
                 "version": str(self.version or "")}
        pairs.update(override)
        if pairs.get("window") != "custom":
            pairs["start"] = pairs["end"] = ""
        return urlencode({k: v for k, v in pairs.items() if v})


def _parse_moment(text: str, *, end: bool) -> datetime | None:
    """An ISO date or date-time; naive values are in the page's time zone; a bare date means
    its midnight (for ``end``, the midnight after it, so ``end=2025-01-31`` includes that day)."""
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            return None
        moment = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _custom_bucket(span: timedelta) -> timedelta:
    for width in BUCKET_WIDTHS:
        if span / width <= MAX_BUCKETS:
            return width
    return span / MAX_BUCKETS


def _read_window(query: QueryDict, now: datetime, errors: dict[str, str]) -> Window | None:
    name = query.get("window", "").strip()
    start_text, end_text = query.get("start", "").strip(), query.get("end", "").strip()
    if not name:
        name = "custom" if (start_text or end_text) else DEFAULT_WINDOW
    if name in PRESETS:
        length, bucket = PRESETS[name]
        end = now.replace(microsecond=0)
        return Window(name, end - length, end, bucket)
    if name != "custom":
        errors["window"] = f"unknown window {name!r}; use one of {', '.join([*PRESETS, 'custom'])}"
        return None
    start = end = None
    for field, text in (("start", start_text), ("end", end_text)):
        try:
            moment = _parse_moment(text, end=field == "end") if text else None
        except ValueError:  # a well-formed but impossible date (2025-02-30)
            moment = None
        if not text:
            errors[field] = f"a custom window needs its {field}, for example {now:%Y-%m-%dT%H:%M}"
        elif moment is None:
            errors[field] = f"{field} must be a date or date-time such as {now:%Y-%m-%dT%H:%M}, not {text[:40]!r}"
        elif field == "start":
            start = moment
        else:
            end = moment
    if start is None or end is None:
        return None
    if end <= start:
        errors["end"] = "the window must end after it starts"
        return None
    if end - start < MIN_SPAN:
        errors["end"] = "a window is at least one minute long"
        return None
    if end - start > MAX_SPAN:
        errors["end"] = "a window is at most 366 days long"
        return None
    return Window("custom", start, end, _custom_bucket(end - start))


def read_filters(query: QueryDict, versions: dict[str, list[int]], now: datetime) -> Filters:
    """The window, workflow and version asked for, with a message for each bad value."""
    errors: dict[str, str] = {}
    raw = {key: query.get(key, "").strip() for key in ("window", "start", "end", "workflow", "version")}
    window = _read_window(query, now, errors)
    workflow = raw["workflow"]
    if workflow and workflow not in versions:
        errors["workflow"] = f"no workflow is called {workflow[:100]!r}"
    version: int | None = None
    if raw["version"]:
        if not (raw["version"].isdigit() and int(raw["version"]) > 0):
            errors["version"] = f"version must be a positive number, not {raw['version'][:20]!r}"
        elif not workflow:
            errors["version"] = "choose a workflow to filter by one of its versions"
        else:
            version = int(raw["version"])
            if workflow in versions and version not in versions[workflow]:
                errors["version"] = f"{workflow} has no version {version}"
    return Filters(window, workflow, version, errors, raw)


# --- tiles -------------------------------------------------------------------------------------


@dataclass
class Tile:
    key: str
    label: str
    value: str
    detail: str
    arrow: str  # ↑ ↓ → or "" (no comparison); the words say the same
    change_words: str
    sense: str  # "better", "worse" or "" (no better direction, or no change)
    previous: str


def _count(value: Any) -> str:
    return f"{value:,}"


# key, label, format, which way is better ("up", "down" or ""), detail from the report.
TILES: list[tuple[str, str, Callable[[Any], str], str, Callable[[KpiReport], str]]] = [
    ("completion_rate", "Task completion rate", percent, "up",
     lambda r: f"{r.succeeded:,} succeeded of {r.finished:,} finished ({r.failed:,} failed, "
               f"{r.cancelled:,} cancelled)"),
    ("finished", "Runs finished", _count, "",
     lambda r: f"{r.started:,} started in the window, {r.unfinished:,} of them not finished"),
    ("latency_p50", "Latency p50", duration, "down", lambda r: "run wall time, start to finish, succeeded runs"),
    ("latency_p95", "Latency p95", duration, "down", lambda r: "run wall time, succeeded runs"),
    ("latency_p99", "Latency p99", duration, "down", lambda r: "run wall time, succeeded runs"),
    ("latency_net_p50", "Latency p50 without human wait", duration, "down",
     lambda r: f"p95 {duration(r.latency_net_p95)}, p99 {duration(r.latency_net_p99)}"),
    ("resume_success_rate", "Resume success rate", percent, "up",
     lambda r: f"{r.resumed_succeeded:,} of {r.resumed:,} resumed runs finished normally"),
    ("duplicate_effect_rate", "Duplicate-effect rate", percent, "down",
     lambda r: f"{r.duplicated_effects:,} of {r.effect_keys:,} effect keys ran twice; {r.dedup_hits:,} "
               f"re-executions prevented (dedup hits); {r.possible_duplicates:,} possible"),
    ("cost_per_task", "Cost per task", money, "down",
     lambda r: f"{r.tokens_per_task or 0:,.0f} tokens per task; {money(r.cost)} and {r.tokens:,} tokens in all"),
    ("runs_per_minute", "Throughput: runs", per_minute, "up", lambda r: f"runs finished: {r.finished:,}"),
    ("steps_per_minute", "Throughput: steps", per_minute, "up", lambda r: f"steps finished: {r.steps_finished:,}"),
    ("queue_wait_p50", "Queue wait p50", duration, "down",
     lambda r: f"scheduled to claimed; {r.attempts_claimed:,} attempts claimed"),
    ("queue_wait_p95", "Queue wait p95", duration, "down", lambda r: "scheduled to claimed"),
    ("retry_rate", "Retry rate", percent, "down", lambda r: f"{r.retries:,} retries of {r.steps_finished:,} steps"),
    ("compensation_rate", "Compensation rate", percent, "down",
     lambda r: f"{r.compensated:,} of {r.finished:,} finished runs compensated"),
    ("approval_wait_p50", "Approval wait p50", duration, "down",
     lambda r: f"p95 {duration(r.approval_wait_p95)}; {r.approvals_decided:,} decisions"),
    ("budget_kills", "Runs killed by budget", _count, "down",
     lambda r: f"{percent(r.budget_kill_rate)} of finished runs"),
]


def _tile(key: str, label: str, fmt: Callable[[Any], str], better: str, detail: Callable[[KpiReport], str],
          now: KpiReport, before: KpiReport, window: Window) -> Tile:
    current, previous = getattr(now, key), getattr(before, key)
    ratio = change(current, previous)
    compared = f"against {window.previous_words}"
    if ratio is None:
        if current is None or previous is None:
            arrow, words, direction = "", "no earlier figure to compare with", ""
        elif current == previous:
            arrow, words, direction = "→", f"no change {compared}", ""
        else:  # from zero to something
            arrow, words, direction = "↑", f"up from zero {compared}", "up"
    elif abs(ratio) < 0.0005:
        arrow, words, direction = "→", f"no change {compared}", ""
    else:
        direction = "up" if ratio > 0 else "down"
        arrow = "↑" if ratio > 0 else "↓"
        words = f"{direction} {abs(ratio) * 100:,.1f} % {compared}"
    sense = "" if not (better and direction) else ("better" if direction == better else "worse")
    if sense:
        words += f" ({sense})"
    return Tile(key, label, fmt(current), detail(now), arrow, words, sense, fmt(previous))


# --- charts ------------------------------------------------------------------------------------


def _charts(points: list[KpiPoint]) -> list[Chart]:
    buckets = [(p.start, p.end) for p in points]

    def values(name: str) -> list[Any]:
        return [getattr(p, name) for p in points]

    return [
        time_chart("completion-rate", "Task completion rate", buckets,
                   [Series("completion rate", values("completion_rate"))], unit=PERCENT,
                   y_title="succeeded / finished runs, percent"),
        time_chart("latency", "Latency (succeeded runs)", buckets,
                   [Series("p50", values("latency_p50")), Series("p95", values("latency_p95"))],
                   unit=DURATION, y_title="run wall time"),
        time_chart("throughput", "Throughput", buckets,
                   [Series("runs finished", values("runs_per_minute")),
                    Series("steps finished", values("steps_per_minute"))],
                   unit=PER_MINUTE, kind="bar", y_title="finished per minute"),
        time_chart("cost-per-task", "Cost per task", buckets, [Series("cost per task", values("cost_per_task"))],
                   unit=MONEY, y_title="US dollars per succeeded run"),
        time_chart("queue-wait", "Queue wait", buckets,
                   [Series("p50", values("queue_wait_p50")), Series("p95", values("queue_wait_p95"))],
                   unit=DURATION, y_title="scheduled to claimed"),
        time_chart("retries-and-compensations", "Retry, compensation and duplicate-effect rates", buckets,
                   [Series("retry rate", values("retry_rate")),
                    Series("compensation rate", values("compensation_rate")),
                    Series("duplicate-effect rate", values("duplicate_effect_rate"))],
                   unit=PERCENT, y_title="percent"),
    ]


def _local_input(moment: datetime) -> str:
    """A moment as a ``datetime-local`` input's value, in the page's time zone."""
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def kpi_dashboard(request: HttpRequest) -> HttpResponse:
    """Every KPI for the chosen window, its change against the window before, charts over time
    with their data tables, and how long each state takes."""
    now = timezone.now()
    versions: dict[str, list[int]] = {}
    for name, number in WorkflowVersion.objects.order_by("workflow__name", "number").values_list(
            "workflow__name", "number"):
        versions.setdefault(name, []).append(number)
    filters = read_filters(request.GET, versions, now)
    window = filters.window
    context: dict[str, Any] = {
        "filters": filters, "window": window, "workflows": list(versions),
        "versions": versions.get(filters.workflow, []), "presets": PRESET_WORDS,
        "has_runs": Run.objects.exists(),
    }
    if window is not None:
        context["start_input"], context["end_input"] = _local_input(window.start), _local_input(window.end)
        context["preset_links"] = [(name, words, filters.query(window=name)) for name, words in PRESET_WORDS.items()]
    if window is None or filters.errors or not context["has_runs"]:
        return render(request, "monitoring/kpi_dashboard.html", context, status=400 if filters.errors else 200)
    scope = {"workflow": filters.workflow or None, "version": filters.version}
    report, points = kpi_report_and_series(window.start, window.end, window.bucket, **scope)
    before = kpi_report(*window.previous, **scope)
    context.update({
        "report": report, "before": before, "previous_start": window.previous[0],
        "tiles": [_tile(*spec, report, before, window) for spec in TILES],
        "charts": _charts(points), "bucket_count": len(points),
        "bucket_words": span_words(window.bucket),
        "states": state_latency(window.start, window.end, **scope),
        "all_workflows_query": filters.query(workflow="", version=""),
        "quiet": report.finished == 0 and report.started == 0 and report.steps_finished == 0,
        "rolled": window.end - window.start >= ROLLED_SPAN,
    })
    return render(request, "monitoring/kpi_dashboard.html", context)
