"""Hourly KPI rollups: the figures of each closed hour, kept so that a week or a month of KPIs
reads a few thousand rows instead of every run and attempt in it.

Each hour holds, per workflow version and apart for top-level runs and sub-runs, the same
families ``kpis.py`` counts, keyed by the same timestamps: runs and their effects by the run's
``finished_at``, step attempts by ``finished_at``, queue wait by ``claimed_at``, each state's
run time by the attempt's ``finished_at``. Counts and sums are exact; durations are histograms
(histograms.py), so percentiles read from them are within 1 %.

An hour is rolled up ``GRACE`` after it ends, in order, by whichever worker's sweep gets the
cursor first (``roll_up``, on the engine's ``swept`` signal). Rows never change after their
hour, except that a redrive takes a failed run out of the hour it had failed in: the reader
sees the redrive event and recomputes that hour from the live rows, and the next pass rolls it
again. Every ``CHECK_EVERY`` the pass also compares each rolled hour's run and step counts
with the live rows and rolls again the hours that differ (history loaded into the past, runs
deleted). ``manage.py rollup_kpis`` rolls up (or rebuilds) by hand.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import TruncHour

from orchestrator.engine import clock
from orchestrator.models import AttemptKind, Effect, Event, EventKind, Run, RunStatus, StepAttempt

from .histograms import Histogram, add
from .kpis import (
    EFFECT_AGGREGATES,
    STEP_AGGREGATES,
    TERMINAL,
    TIMED_ATTEMPT_STATUSES,
    attempt_run_seconds,
    queue_wait_seconds,
    run_aggregates,
    run_net_seconds,
    run_wall_seconds,
)
from .models import KpiHour, RollupCursor, StateHour

logger = logging.getLogger("ratchet.rollups")

HOUR = timedelta(hours=1)
GRACE = timedelta(minutes=5)  # transactions that finished a run just before the hour ended have committed
MAX_HOURS_PER_PASS = 24  # a sweep that rolls up stays short: a backlog takes several
PASS_EVERY_SECONDS = 60
CHECK_EVERY = timedelta(minutes=10)
REDRIVE_MARGIN = timedelta(minutes=1)  # a redrive that committed while its hour was being rolled up

RUN_COUNTS = ("finished", "succeeded", "failed", "cancelled", "resumed", "resumed_succeeded", "budget_kills",
              "compensated", "tokens", "cost")
COUNTS = (*RUN_COUNTS, *EFFECT_AGGREGATES, *STEP_AGGREGATES)
HISTOGRAMS = ("latency", "latency_net", "queue_wait")

Key = tuple[datetime, int, int, bool]  # hour, workflow id, version id, sub-run
StateKey = tuple[datetime, int, int, str]  # hour, workflow id, version id, state
Ranges = Sequence[tuple[datetime, datetime]]


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _within(field: str, ranges: Ranges) -> Q:
    q = Q(pk__in=[])
    for start, end in ranges:
        q |= Q(**{f"{field}__gte": start, f"{field}__lt": end})
    return q


def _keys(time_field: str, run: str = "run__") -> dict[str, Any]:
    return {"kg_hour": TruncHour(time_field, tzinfo=UTC), "kg_workflow": F(f"{run}workflow_id"),
            "kg_version": F(f"{run}version_id"),
            "kg_child": ExpressionWrapper(Q(**{f"{run}parent__isnull": False}), output_field=BooleanField())}


KEY_FIELDS = ("kg_hour", "kg_workflow", "kg_version", "kg_child")


def empty_row() -> dict[str, Any]:
    return {**{name: 0 for name in COUNTS}, **{name: {} for name in HISTOGRAMS}}


def compute(ranges: Ranges, scope: Q | None = None, run_scope: Q | None = None) -> dict[Key, dict[str, Any]]:
    """The figures of the rows in ``ranges`` (any instants, not only whole hours), per hour:
    what a pass stores, and what a reader computes for the parts of a window no rollup covers.
    ``scope`` filters runs; ``run_scope`` is the same filter reached from attempts and effects.
    Five queries."""
    rows: dict[Key, dict[str, Any]] = {}

    def row(values: dict[str, Any]) -> dict[str, Any]:
        key = tuple(values[name] for name in KEY_FIELDS)
        found = rows.get(key)
        if found is None:
            found = rows[key] = empty_row()
        return found

    if not ranges:
        return rows
    scope, run_scope = scope or Q(), run_scope or Q()
    end = max(b for _, b in ranges)
    runs = Run.objects.filter(scope, _within("finished_at", ranges), status__in=TERMINAL).order_by()
    for values in runs.annotate(**_keys("finished_at", "")).values(*KEY_FIELDS).annotate(**run_aggregates(end)):
        target = row(values)
        for name in RUN_COUNTS:
            target[name] += values[name]
    timed = runs.filter(status=RunStatus.SUCCEEDED).annotate(
        **_keys("finished_at", ""), kg_wall=run_wall_seconds(), kg_net=run_net_seconds())
    for values in timed.values(*KEY_FIELDS, "kg_wall", "kg_net"):
        target = row(values)
        add(target["latency"], values["kg_wall"])
        add(target["latency_net"], values["kg_net"])
    effects = Effect.objects.filter(run_scope, _within("run__finished_at", ranges), run__status__in=TERMINAL)
    for values in effects.order_by().annotate(**_keys("run__finished_at")).values(*KEY_FIELDS).annotate(
            **EFFECT_AGGREGATES):
        target = row(values)
        for name in EFFECT_AGGREGATES:
            target[name] += values[name]
    steps = StepAttempt.objects.filter(run_scope, _within("finished_at", ranges), kind=AttemptKind.STEP)
    for values in steps.order_by().annotate(**_keys("finished_at")).values(*KEY_FIELDS).annotate(**STEP_AGGREGATES):
        target = row(values)
        for name in STEP_AGGREGATES:
            target[name] += values[name]
    claimed = StepAttempt.objects.filter(run_scope, _within("claimed_at", ranges)).order_by()
    for values in claimed.annotate(**_keys("claimed_at"), kg_wait=queue_wait_seconds()).values(
            *KEY_FIELDS, "kg_wait"):
        add(row(values)["queue_wait"], values["kg_wait"])
    return rows


def compute_states(ranges: Ranges, run_scope: Q | None = None) -> dict[StateKey, Histogram]:
    """How long each state's step attempts that finished in ``ranges`` ran, per hour: the
    attempts ``kpis.state_latency`` reads (an outcome of their own). One query."""
    durations: dict[StateKey, Histogram] = {}
    if not ranges:
        return durations
    ran = StepAttempt.objects.filter(
        run_scope or Q(), _within("finished_at", ranges), kind=AttemptKind.STEP, status__in=TIMED_ATTEMPT_STATUSES,
        claimed_at__isnull=False,
    ).order_by().annotate(kg_hour=TruncHour("finished_at", tzinfo=UTC), kg_seconds=attempt_run_seconds())
    for hour, workflow, version, state, seconds in ran.values_list(
            "kg_hour", "run__workflow_id", "run__version_id", "state_name", "kg_seconds"):
        add(durations.setdefault((hour, workflow, version, state), {}), seconds)
    return durations


# --- passes: storing closed hours ------------------------------------------------------------------


def _locked_cursor() -> RollupCursor | None:
    """The cursor, locked for this transaction; None while another worker holds it."""
    cursors = RollupCursor.objects.filter(pk=1).select_for_update(skip_locked=True)
    found = cursors.first()
    if found is None and not RollupCursor.objects.filter(pk=1).exists():
        try:
            with transaction.atomic():
                RollupCursor.objects.create(pk=1)
        except IntegrityError:  # another worker created it first
            pass
        found = cursors.first()
    return found


def _store(hours: Iterable[datetime], ranges: Ranges, now: datetime) -> None:
    """Replace the rows of ``hours`` (whole hours, covered by ``ranges``) with fresh ones."""
    hours = list(hours)
    rows, durations = compute(ranges), compute_states(ranges)
    KpiHour.objects.filter(hour__in=hours).delete()
    StateHour.objects.filter(hour__in=hours).delete()
    KpiHour.objects.bulk_create(
        KpiHour(hour=hour, workflow_id=workflow, version_id=version, child=child, rolled_at=now, **figures)
        for (hour, workflow, version, child), figures in rows.items())
    StateHour.objects.bulk_create(
        StateHour(hour=hour, workflow_id=workflow, version_id=version, state_name=state, durations=histogram,
                  rolled_at=now)
        for (hour, workflow, version, state), histogram in durations.items())


def _first_hour() -> datetime | None:
    first = Run.objects.aggregate(first=Min("created_at"))["first"]
    return floor_hour(first) if first else None


def _hours(start: datetime, end: datetime) -> list[datetime]:
    count = max(0, int((end - start) / HOUR))
    return [start + i * HOUR for i in range(count)]


def _differing_hours(cursor: RollupCursor) -> set[datetime]:
    """Rolled hours whose finished runs or finished steps no longer match the live rows."""
    span = [(cursor.rolled_from, cursor.rolled_through)]
    kept = {row["hour"]: row for row in KpiHour.objects.filter(
        hour__gte=cursor.rolled_from, hour__lt=cursor.rolled_through).order_by().values("hour").annotate(
        finished=Sum("finished"), steps=Sum("steps"))}
    differing: set[datetime] = set()
    for live, stored in (
        (Run.objects.filter(_within("finished_at", span), status__in=TERMINAL), "finished"),
        (StepAttempt.objects.filter(_within("finished_at", span), kind=AttemptKind.STEP), "steps"),
    ):
        counted = dict(live.order_by().annotate(kg_hour=TruncHour("finished_at", tzinfo=UTC)).values(
            "kg_hour").annotate(n=Count("pk")).values_list("kg_hour", "n"))
        differing |= {hour for hour in set(counted) | set(kept)
                      if counted.get(hour, 0) != (kept[hour][stored] if hour in kept else 0)}
    return differing


def roll_up(now: datetime | None = None, *, max_hours: int = MAX_HOURS_PER_PASS, check: bool | None = None) -> int:
    """Roll up the hours that closed since the last pass (at most ``max_hours``), the hours a
    redrive changed, and (every CHECK_EVERY, or when ``check``) the hours whose counts differ
    from the live rows. Returns how many hours were rolled; 0 at once when another worker holds
    the cursor or there is nothing to do. One or two queries when up to date."""
    now = now or clock.now()
    limit = floor_hour(now - GRACE)
    with transaction.atomic():
        cursor = _locked_cursor()
        if cursor is None:
            return 0
        if cursor.rolled_through is None:
            first = _first_hour()
            if first is None:
                return 0
            cursor.rolled_from = cursor.rolled_through = first
        due = _hours(cursor.rolled_through, min(limit, cursor.rolled_through + max_hours * HOUR))
        since = cursor.updated_at - REDRIVE_MARGIN if cursor.updated_at else None
        again = set(stale_hours(cursor.rolled_from, cursor.rolled_through, since=since))
        if check or (check is None and (cursor.checked_at is None or now - cursor.checked_at >= CHECK_EVERY)):
            first = _first_hour()
            if first is not None and first < cursor.rolled_from:
                again |= set(_hours(first, cursor.rolled_from))
                cursor.rolled_from = first
            again |= _differing_hours(cursor)
            cursor.checked_at = now
        hours = sorted(again | set(due))
        if hours:
            _store(hours, [(hour, hour + HOUR) for hour in hours], now)
        if due:
            cursor.rolled_through = due[-1] + HOUR
        cursor.save()
    if hours:
        logger.info("rolled up %d hour(s) of KPIs, through %s", len(hours), cursor.rolled_through)
    return len(hours)


_last_pass = [-math.inf]


def roll_up_after_sweep(sender: Any = None, now: datetime | None = None, **kwargs: Any) -> None:
    """Receiver of the engine's ``swept`` signal: a pass at most every PASS_EVERY_SECONDS per
    process (hours close once an hour), never an error for the sweeper."""
    if time.monotonic() - _last_pass[0] < PASS_EVERY_SECONDS:
        return
    _last_pass[0] = time.monotonic()
    try:
        roll_up(now)
    except Exception:
        logger.warning("KPI rollup pass failed; a later sweep tries again", exc_info=True)


def catch_up(now: datetime | None = None) -> int:
    """Passes until every closed hour is rolled up (the first one also compares the rolled hours
    with the live rows). Returns the hours rolled."""
    total = rolled = roll_up(now, check=True)
    while rolled:
        rolled = roll_up(now, check=False)
        total += rolled
    return total


def rebuild(now: datetime | None = None) -> int:
    """Forget every rollup and roll up all closed hours again."""
    with transaction.atomic():
        KpiHour.objects.all().delete()
        StateHour.objects.all().delete()
        RollupCursor.objects.all().delete()
    return catch_up(now)


def stale_hours(start: datetime | None, end: datetime | None, *, since: Any = None,
                rolled_at: dict[datetime, datetime] | None = None) -> list[datetime]:
    """Rolled hours in ``[start, end)`` that a redrive changed after they were rolled up: the
    run left the hour it had failed in. ``rolled_at``: when each hour was rolled (else any
    redrive since ``since`` counts). One query."""
    if start is None or end is None or start >= end:
        return []
    redrives = Event.objects.filter(kind=EventKind.RUN_REDRIVEN, created_at__gte=since or start)
    stale = set()
    for failed_at, created_at in redrives.values_list("data__failed_at", "created_at"):
        if not failed_at:
            continue
        hour = floor_hour(datetime.fromisoformat(failed_at))
        if not start <= hour < end:
            continue
        if rolled_at is None or (hour in rolled_at and created_at >= rolled_at[hour] - REDRIVE_MARGIN):
            stale.add(hour)
    return sorted(stale)
