"""KPIs of long windows read from hourly rollups (monitoring/rollups.py, rolled_kpis.py): the same
counts as the exact queries, percentiles within 1 %, and never stale after a redrive or history
loaded into the past. Runs on SQLite too (json_each) and on PostgreSQL (jsonb_each_text)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitoring import histograms, rollups
from monitoring.kpis import kpi_report, kpi_report_and_series, kpi_series, state_latency
from monitoring.models import KpiHour, RollupCursor, StateHour
from orchestrator.engine.signals import swept
from orchestrator.models import AttemptStatus, EffectStatus, Event, EventKind, Run, RunStatus

from .test_kpis import attempt, effect, make_run, percentile_cont, versions  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.engine]

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 3
NOW = T0 + timedelta(days=DAYS + 1)  # every hour of the data set has closed
START, END = T0 + timedelta(minutes=17), T0 + timedelta(days=DAYS, minutes=-23)  # not on whole hours
EXACT_FIELDS = ("finished", "succeeded", "failed", "cancelled", "started", "unfinished", "resumed",
                "resumed_succeeded", "effect_keys", "duplicated_effects", "dedup_hits", "possible_duplicates",
                "tokens", "cost", "steps_finished", "retries", "attempts_claimed", "compensated", "budget_kills",
                "approvals_decided", "runs_per_minute", "steps_per_minute", "completion_rate")
PERCENTILES = ("latency_p50", "latency_p95", "latency_p99", "latency_net_p50", "latency_net_p95", "queue_wait_p50",
               "queue_wait_p95")


@pytest.fixture
def history(versions):  # noqa: F811
    """Three days of runs of three workflow versions: every status, sub-runs, retries, effects."""
    k1, k2, other = versions
    rng = random.Random(7)
    runs = []
    for i in range(240):
        version = (k1, k2, other)[i % 3]
        created = T0 + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        status = rng.choice([RunStatus.SUCCEEDED] * 6 + [RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.RUNNING])
        took = timedelta(seconds=rng.lognormvariate(2, 1.2))
        finished = None if status == RunStatus.RUNNING else created + took
        run = make_run(version, status, created, finished, tokens_used=rng.randrange(500),
                       cost_used=Decimal(rng.randrange(100)) / 100, resume_count=rng.choice([0, 0, 0, 1]),
                       human_wait_seconds=rng.choice([0.0, 0.0, took.total_seconds() / 2]),
                       parent=runs[-1] if i % 10 == 9 else None)
        runs.append(run)
        claimed = created + timedelta(seconds=rng.uniform(0, 2))
        first = attempt(run, "ask", created, claimed, claimed + took / 3,
                        status=AttemptStatus.FAILED if i % 4 == 0 else AttemptStatus.SUCCEEDED)
        if i % 4 == 0:
            attempt(run, "ask", first.finished_at, first.finished_at + timedelta(seconds=1), claimed + took / 2,
                    attempt=2)
        if finished is not None:
            attempt(run, "tell", claimed + took / 2, claimed + took / 2 + timedelta(seconds=0.3),
                    finished - timedelta(seconds=0.01))
        if i % 5 == 0:
            effect(run, f"charge-{i}", status=EffectStatus.CONFIRMED, duplicates=int(i % 15 == 0),
                   dedup_hits=i % 3)
    return runs


def assert_same(rolled, exact) -> None:
    for name in EXACT_FIELDS:
        assert getattr(rolled, name) == getattr(exact, name), name
    for name in PERCENTILES:
        value, truth = getattr(rolled, name), getattr(exact, name)
        assert (value is None) == (truth is None), name
        if truth:
            assert abs(value - truth) <= histograms.RELATIVE_ERROR * truth + 1e-9, (name, value, truth)


# --- histograms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_from_a_histogram_are_within_one_percent_of_the_exact_ones(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(0, 2) for _ in range(rng.randrange(1, 400))] + [0.0] * rng.randrange(3)
    parts = [{}, {}]
    for i, value in enumerate(values):
        histograms.add(parts[i % 2], value)
    total = histograms.merge(parts)
    assert histograms.count(total) == len(values)
    for p, found in zip((0, 0.5, 0.9, 0.99, 1), histograms.percentiles(total, (0, 0.5, 0.9, 0.99, 1)), strict=True):
        truth = percentile_cont(values, p)
        assert math.isclose(found, truth, rel_tol=histograms.RELATIVE_ERROR, abs_tol=1e-12), (p, found, truth)


def test_an_empty_histogram_has_no_percentiles_and_missing_values_are_not_counted():
    histogram = {}
    histograms.add(histogram, None)
    assert histogram == {} and histograms.percentiles(histogram, (0.5,)) == [None]


# --- rolled reports equal the exact ones ---------------------------------------------------------


def test_a_long_window_read_from_rollups_equals_the_exact_report(history):
    # from T0's hour to the last one that closed GRACE before NOW
    assert rollups.catch_up(NOW) == (NOW - T0) // rollups.HOUR - 1
    assert KpiHour.objects.exists() and StateHour.objects.exists()
    for workflow, version in ((None, None), ("k", None), ("k", 2), ("other", None)):
        assert_same(kpi_report(START, END, workflow=workflow, version=version),
                    kpi_report(START, END, workflow=workflow, version=version, exact=True))


def test_the_report_reads_the_stored_hours(history):
    """Proof that the figures come from the rollups: a stored hour changed by hand shows."""
    rollups.catch_up(NOW)
    before = kpi_report(START, END)
    row = KpiHour.objects.filter(child=False, hour__gte=START + timedelta(hours=1)).order_by("hour").first()
    KpiHour.objects.filter(pk=row.pk).update(finished=row.finished + 1000)
    assert kpi_report(START, END).finished == before.finished + 1000
    assert kpi_report(START, END, exact=True).finished == before.finished


def test_each_bucket_of_a_rolled_series_equals_the_exact_report_over_it(history):
    rollups.catch_up(NOW)
    points = kpi_series(START, END, timedelta(hours=6))
    assert points[0].start == START and points[-1].end == END
    assert all(p.start.minute == 0 for p in points[1:])  # inner edges on whole hours
    assert points[0].end - points[0].start > timedelta(hours=6)  # the first bucket runs to a whole hour
    for point in points:
        exact = kpi_report(point.start, point.end, exact=True)
        for name in ("finished", "succeeded", "failed", "cancelled", "effect_keys", "duplicated_effects",
                     "dedup_hits", "steps_finished", "budget_kills", "completion_rate", "runs_per_minute"):
            assert getattr(point, name) == getattr(exact, name), (point.start, name)
        if exact.latency_p95:
            assert abs(point.latency_p95 - exact.latency_p95) <= histograms.RELATIVE_ERROR * exact.latency_p95 + 1e-9
    report, series = kpi_report_and_series(START, END, timedelta(hours=6))
    assert series == points
    assert_same(report, kpi_report(START, END, exact=True))


def test_state_latency_from_rollups(history):
    rollups.catch_up(NOW)
    rolled, exact = state_latency(START, END), state_latency(START, END, exact=True)
    assert [(s.workflow, s.state_name, s.attempts) for s in rolled] == [
        (s.workflow, s.state_name, s.attempts) for s in exact]
    for found, truth in zip(rolled, exact, strict=True):
        assert abs(found.p95 - truth.p95) <= histograms.RELATIVE_ERROR * truth.p95 + 1e-9


def test_hours_not_rolled_yet_are_read_live(history):
    """Rollups that stop half-way (no worker swept since) still give the exact counts."""
    rollups.roll_up(T0 + timedelta(days=1, hours=5), max_hours=24)
    assert RollupCursor.objects.get().rolled_through == T0 + timedelta(days=1)
    assert_same(kpi_report(START, END), kpi_report(START, END, exact=True))


# --- rollups never go stale --------------------------------------------------------------------


def test_a_redriven_run_leaves_its_rolled_hour_at_once_and_the_next_pass_rolls_it_again(history, redis_conn):
    from orchestrator.engine.runs import redrive_run

    failed = next(run for run in history if run.status == RunStatus.FAILED and run.parent_id is None
                  and START + timedelta(hours=1) < run.finished_at < END - timedelta(hours=1))
    step = attempt(failed, "a", failed.created_at, failed.created_at, failed.finished_at, status=AttemptStatus.FAILED)
    Run.objects.filter(pk=failed.pk).update(failed_attempt=step)
    rollups.catch_up(NOW)
    hour = rollups.floor_hour(failed.finished_at)
    before = kpi_report(START, END)
    redrive_run(failed.pk)
    redriven = Event.objects.get(run=failed, kind=EventKind.RUN_REDRIVEN)
    assert redriven.data["failed_at"] == failed.finished_at.isoformat()
    after = kpi_report(START, END)
    assert after.failed == before.failed - 1 and after.finished == before.finished - 1
    assert_same(after, kpi_report(START, END, exact=True))
    rolled_at = KpiHour.objects.filter(hour=hour).earliest("rolled_at").rolled_at
    assert rollups.roll_up(NOW + timedelta(minutes=1), check=False) == 1  # that hour, again
    assert KpiHour.objects.filter(hour=hour).earliest("rolled_at").rolled_at > rolled_at
    assert_same(kpi_report(START, END), kpi_report(START, END, exact=True))


def test_history_loaded_into_rolled_hours_is_rolled_again_by_the_check(history, versions):  # noqa: F811
    k1 = versions[0]
    rollups.catch_up(NOW)
    late = make_run(k1, RunStatus.SUCCEEDED, T0 + timedelta(hours=30), T0 + timedelta(hours=30, seconds=9))
    attempt(late, "ask", late.created_at, late.created_at, late.finished_at)
    assert kpi_report(START, END).finished == kpi_report(START, END, exact=True).finished - 1  # not seen yet
    assert rollups.roll_up(NOW, check=True) == 1
    assert_same(kpi_report(START, END), kpi_report(START, END, exact=True))


def test_runs_older_than_the_first_rolled_hour_are_rolled_by_the_check(history, versions):  # noqa: F811
    rollups.catch_up(NOW)
    first = RollupCursor.objects.get().rolled_from
    make_run(versions[0], RunStatus.FAILED, first - timedelta(hours=5), first - timedelta(hours=4, minutes=30))
    assert rollups.roll_up(NOW, check=True) == 5
    assert RollupCursor.objects.get().rolled_from == first - timedelta(hours=5)
    window = (first - timedelta(hours=5, minutes=1), END)
    assert_same(kpi_report(*window), kpi_report(*window, exact=True))


def test_a_sweep_rolls_up_closed_hours(history, monkeypatch):
    monkeypatch.setattr(rollups, "_last_pass", [-math.inf])
    swept.send_robust(sender="ratchet", now=NOW)
    assert RollupCursor.objects.get().rolled_through == T0 + timedelta(hours=24)  # one day per pass
    swept.send_robust(sender="ratchet", now=NOW)  # within a minute: this process does not pass again
    assert RollupCursor.objects.get().rolled_through == T0 + timedelta(hours=24)


def test_the_open_hour_and_the_grace_after_it_are_not_rolled(versions):  # noqa: F811
    make_run(versions[0], RunStatus.SUCCEEDED, T0, T0 + timedelta(seconds=5))
    assert rollups.roll_up(T0 + timedelta(hours=1, minutes=4)) == 0
    assert rollups.roll_up(T0 + timedelta(hours=1, minutes=5)) == 1
    assert rollups.roll_up(T0 + timedelta(hours=1, minutes=30)) == 0


# --- cost ---------------------------------------------------------------------------------------


def test_a_rolled_window_costs_a_fixed_number_of_queries(history, versions):  # noqa: F811
    rollups.catch_up(NOW)
    counts = []
    for extra in range(2):
        if extra:  # more runs in rolled hours, and a new workflow version
            for i in range(30):
                created = T0 + timedelta(hours=i)
                make_run(versions[i % 3], RunStatus.SUCCEEDED, created, created + timedelta(seconds=3))
            rollups.roll_up(NOW, check=True)
        for call in (lambda: kpi_report(START, END), lambda: kpi_series(START, END, timedelta(hours=6)),
                     lambda: kpi_report_and_series(START, END, timedelta(hours=6)),
                     lambda: state_latency(START, END)):
            with CaptureQueriesContext(connection) as queries:
                call()
            counts.append(len(queries))
    # report: cursor, redrives, sums, three histograms, five live families, started, approvals;
    # series: the same without the last two; state latency: cursor, histograms, live, names
    assert counts == [13, 11, 13, 4] * 2, counts
    assert Run.objects.count() == len(history) + 30


# --- the page -------------------------------------------------------------------------------------


def test_a_long_window_on_the_dashboard_shows_the_rolled_figures_and_says_so(viewer, history):
    rollups.catch_up(NOW)
    params = {"window": "custom", "start": "2025-03-01T00:17", "end": "2025-03-03T23:37"}
    with CaptureQueriesContext(connection) as queries:
        response = viewer.get(reverse("monitoring:kpi_dashboard"), params)
    html = response.content.decode()
    assert 'id="rolled-note"' in html and "percentiles are within 1 %" in html
    window = response.context["window"]
    assert response.context["report"] == kpi_report(window.start, window.end)
    assert_same(response.context["report"], kpi_report(window.start, window.end, exact=True))
    assert any("monitoring_kpihour" in q["sql"] for q in queries)
    # the day, short enough to be exact, says nothing of rollups
    day = {"window": "custom", "start": "2025-03-02T00:00", "end": "2025-03-03T00:00"}
    assert 'id="rolled-note"' not in viewer.get(reverse("monitoring:kpi_dashboard"), day).content.decode()
