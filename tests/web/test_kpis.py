"""KPIs (monitoring.kpis) against hand-computed values on a small fixed data set.

The same tests run on SQLite (window-function percentiles) and, with DATABASE_URL, on
PostgreSQL (percentile_cont); ``test_both_percentile_paths_agree`` runs both paths on the
database at hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from monitoring.kpis import (
    change,
    kpi_report,
    kpi_series,
    percentiles,
    previous_window,
    seconds_between,
    state_latency,
)
from orchestrator.engine.workflows import publish
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
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 1, tzinfo=UTC)
END = T0 + timedelta(hours=1)
approx = pytest.approx


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def definition(name: str, **extra) -> dict:
    return {"name": name, "start_at": "a", "states": {"a": {"type": "succeed"}}, **extra}


def make_run(version, status, created, finished=None, **fields) -> Run:
    run = Run.objects.create(workflow=version.workflow, version=version, status=status, finished_at=finished, **fields)
    Run.objects.filter(pk=run.pk).update(created_at=created)  # auto_now_add
    return run


def attempt(run, state, scheduled, claimed=None, finished=None, status=AttemptStatus.SUCCEEDED, **fields):
    return StepAttempt.objects.create(run=run, state_name=state, sequence=fields.pop("sequence", 1), status=status,
                                      scheduled_at=scheduled, claimed_at=claimed, finished_at=finished, **fields)


def effect(run, key, **fields) -> Effect:
    return Effect.objects.create(run=run, key=key, state_name="a", intent_at=run.created_at or T0, **fields)


def event(run, kind, when, state="approve") -> Event:
    return Event.objects.create(run=run, kind=kind, state_name=state, created_at=when)


@pytest.fixture
def versions():
    k1, _ = publish(definition("k"))
    k2, _ = publish(definition("k", description="second version"))
    other, _ = publish(definition("other"))
    return k1, k2, other


@pytest.fixture
def data(versions):
    """The fixed data set; the comments give what each row contributes."""
    k1, k2, other = versions
    S, F_, C = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED
    runs = {
        # wall 10, no human wait
        "r1": make_run(k1, S, at(0), at(10), tokens_used=100, cost_used=Decimal("0.10")),
        # wall 30, human wait 10 (net 20), resumed once then succeeded
        "r2": make_run(k1, S, at(60), at(90), human_wait_seconds=10, resume_count=1, tokens_used=200,
                       cost_used=Decimal("0.20")),
        "r3": make_run(k1, S, at(120), at(140)),  # wall 20
        "r4": make_run(k1, S, at(180), at(220), human_wait_seconds=40),  # wall 40, net 0
        # resumed twice, then failed; its saga started
        "r5": make_run(k1, F_, at(240), at(300), resume_count=2, failure_mode=FailureMode.LOST_PROGRESS,
                       tokens_used=300, cost_used=Decimal("0.30")),
        # killed by its budget
        "r6": make_run(k1, F_, at(300), at(320), failure_mode=FailureMode.COST_EXPLOSION, tokens_used=1000,
                       cost_used=Decimal("1.00")),
        "r7": make_run(k1, C, at(-30), T0, failure_mode=FailureMode.CANCELLED),  # finished exactly at start: in
        "r8": make_run(k1, RunStatus.RUNNING, at(600)),  # still going: started, unfinished, not terminal
        "r9": make_run(k1, S, END - timedelta(seconds=30), END),  # finished exactly at end: out
        "r10": make_run(k1, S, at(-120), at(-60)),  # finished before the window: out
        "r11": make_run(k2, S, at(2400 - 50), at(2400), tokens_used=100, cost_used=Decimal("0.10")),  # wall 50
        "r12": make_run(other, F_, at(29 * 60), at(30 * 60), failure_mode=FailureMode.HANDLER_ERROR,
                        tokens_used=300, cost_used=Decimal("0.30")),
    }
    # A sub-workflow run of r2: not a task of its own overall, a run of "other" when filtered.
    runs["r13"] = make_run(other, S, at(65), at(85), parent=runs["r2"], tokens_used=50, cost_used=Decimal("0.05"))
    for run in runs.values():
        run.refresh_from_db()

    r = runs
    event(r["r5"], EventKind.COMPENSATION_STARTED, at(290), state="a")
    effect(r["r2"], "charge", status=EffectStatus.CONFIRMED, duplicates=1)
    effect(r["r2"], "mail", status=EffectStatus.CONFIRMED, dedup_hits=2)
    effect(r["r5"], "charge", status=EffectStatus.COMPENSATED)
    effect(r["r12"], "ship", status=EffectStatus.COMPENSATED, unknown_retries=1)  # compensated, no event
    effect(r["r13"], "x", status=EffectStatus.CONFIRMED, duplicates=2)
    effect(r["r9"], "late", status=EffectStatus.CONFIRMED, duplicates=1)  # its run finished at end: out

    # Attempts: queue waits 1, 3, 2, 0, 4, 6, 5 (claimed in the window); steps finished: 5.
    attempt(r["r1"], "a", at(0), at(1), at(5))
    lost = attempt(r["r2"], "a", at(60), at(63), at(70), status=AttemptStatus.LOST)
    attempt(r["r2"], "a", at(70), at(72), at(80), attempt=2, resumed_from=lost)  # a resume, not a retry
    attempt(r["r3"], "b", at(120), at(120), at(125), status=AttemptStatus.FAILED)
    # a retry after a 5 s backoff: it was due at 130, so it waited 4 s for a worker, not 9
    attempt(r["r3"], "b", at(125), at(134), at(139), attempt=2, not_before=at(130))
    attempt(r["r5"], "a", at(290), at(296), at(297), kind=AttemptKind.COMPENSATION)
    attempt(r["r8"], "a", END - timedelta(seconds=9), END - timedelta(seconds=4), None, status=AttemptStatus.RUNNING)
    attempt(r["r10"], "a", at(-120), at(-119), at(-61))  # before the window

    # Approvals: waits 10 and 40 s; the earlier request of r4 is not the one decided.
    event(r["r2"], EventKind.APPROVAL_REQUESTED, at(65))
    event(r["r2"], EventKind.APPROVAL_DECIDED, at(75))
    event(r["r4"], EventKind.APPROVAL_REQUESTED, at(181))
    event(r["r4"], EventKind.APPROVAL_REQUESTED, at(185))
    event(r["r4"], EventKind.APPROVAL_DECIDED, at(225))
    event(r["r3"], EventKind.APPROVAL_DECIDED, at(130), state="never_requested")
    event(r["r9"], EventKind.APPROVAL_REQUESTED, END - timedelta(seconds=20))
    event(r["r9"], EventKind.APPROVAL_DECIDED, END)  # decided at end: out
    return runs


def test_overall_report(data):
    report = kpi_report(T0, END)
    assert (report.finished, report.succeeded, report.failed, report.cancelled) == (9, 5, 3, 1)
    assert report.by_status == {"succeeded": 5, "failed": 3, "cancelled": 1}
    assert (report.started, report.unfinished) == (10, 1)
    assert report.completion_rate == approx(5 / 9)
    # walls 10 20 30 40 50; net 0 10 20 20 50
    assert (report.latency_p50, report.latency_p95, report.latency_p99) == (approx(30), approx(48), approx(49.6))
    assert (report.latency_net_p50, report.latency_net_p95, report.latency_net_p99) == (
        approx(20), approx(44), approx(48.8))
    assert (report.resumed, report.resumed_succeeded, report.resume_success_rate) == (2, 1, 0.5)
    assert (report.effect_keys, report.duplicated_effects, report.dedup_hits, report.possible_duplicates) == (
        5, 2, 2, 1)
    assert report.duplicate_effect_rate == approx(0.4)
    assert (report.tokens, report.cost) == (2000, Decimal("2.00"))
    assert report.tokens_per_task == approx(400)
    assert report.cost_per_task == Decimal("0.40")
    assert report.runs_per_minute == approx(9 / 60)
    assert (report.steps_finished, report.retries) == (5, 1)
    assert report.steps_per_minute == approx(5 / 60)
    assert report.retry_rate == approx(0.2)
    assert report.attempts_claimed == 7
    assert (report.queue_wait_p50, report.queue_wait_p95) == (approx(3), approx(5.7))
    assert (report.compensated, report.compensation_rate) == (2, approx(2 / 9))
    assert (report.budget_kills, report.budget_kill_rate) == (1, approx(1 / 9))
    assert report.approvals_decided == 2
    assert (report.approval_wait_p50, report.approval_wait_p95) == (approx(25), approx(38.5))
    assert (report.workflow, report.version) == (None, None)


def test_filter_by_workflow_and_version(data, versions):
    k1, _, other = versions
    for workflow, version in (("k", 1), (k1.workflow, k1)):
        report = kpi_report(T0, END, workflow=workflow, version=version)
        assert (report.workflow, report.version) == ("k", 1)
        assert (report.finished, report.succeeded, report.failed, report.cancelled) == (7, 4, 2, 1)
        assert report.completion_rate == approx(4 / 7)
        assert (report.latency_p50, report.latency_p95) == (approx(25), approx(38.5))  # walls 10 20 30 40
        assert report.tokens_per_task == approx(1600 / 4)
        assert report.cost_per_task == Decimal("0.40")
        assert (report.effect_keys, report.duplicated_effects) == (3, 1)
        assert report.steps_finished == 5

    assert kpi_report(T0, END, version=k1).finished == 7  # a WorkflowVersion needs no workflow

    k_all = kpi_report(T0, END, workflow="k")
    assert (k_all.finished, k_all.succeeded) == (8, 5)

    # With a workflow filter, a sub-workflow run counts as a run of its own workflow.
    report = kpi_report(T0, END, workflow=other.workflow)
    assert (report.finished, report.succeeded, report.failed) == (2, 1, 1)
    assert report.latency_p50 == approx(20)
    assert report.tokens == 350
    assert (report.effect_keys, report.duplicated_effects) == (2, 1)
    assert report.steps_finished == 0 and report.retry_rate is None

    assert kpi_report(T0, END, workflow="nobody").finished == 0


def test_no_runs_at_all():
    report = kpi_report(T0, END)
    assert (report.finished, report.succeeded, report.started, report.unfinished) == (0, 0, 0, 0)
    assert report.tokens == 0 and report.cost == 0
    assert report.runs_per_minute == 0 and report.steps_per_minute == 0
    for name in ("completion_rate", "latency_p50", "latency_p95", "latency_p99", "latency_net_p50",
                 "resume_success_rate", "duplicate_effect_rate", "tokens_per_task", "cost_per_task", "retry_rate",
                 "queue_wait_p50", "queue_wait_p95", "compensation_rate", "budget_kill_rate", "approval_wait_p50"):
        assert getattr(report, name) is None, name
    assert all(point.finished == 0 and point.completion_rate is None and point.latency_p50 is None
               for point in kpi_series(T0, END, 4))
    assert state_latency(T0, END) == []


def test_all_failed(versions):
    k1 = versions[0]
    make_run(k1, RunStatus.FAILED, at(0), at(10), tokens_used=70, resume_count=1,
             failure_mode=FailureMode.COST_EXPLOSION)
    make_run(k1, RunStatus.FAILED, at(5), at(20), tokens_used=30, failure_mode=FailureMode.HANDLER_ERROR)
    report = kpi_report(T0, END)
    assert (report.finished, report.succeeded, report.failed) == (2, 0, 2)
    assert report.completion_rate == 0.0  # a rate with a denominator is 0, not None
    assert report.latency_p50 is None and report.latency_net_p99 is None
    assert report.tokens == 100 and report.tokens_per_task is None and report.cost_per_task is None
    assert report.resume_success_rate == 0.0  # a run with resumes that then failed
    assert (report.budget_kills, report.budget_kill_rate) == (1, 0.5)


def test_runs_still_going_are_not_terminal(versions):
    k1 = versions[0]
    for status in (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED, RunStatus.COMPENSATING):
        make_run(k1, status, at(10), resume_count=1)
    report = kpi_report(T0, END)
    assert (report.finished, report.started, report.unfinished) == (0, 4, 4)
    assert report.completion_rate is None and report.resume_success_rate is None


def test_window_boundaries_are_half_open(versions):
    k1 = versions[0]
    make_run(k1, RunStatus.SUCCEEDED, at(-10), T0)  # at start: in
    make_run(k1, RunStatus.SUCCEEDED, at(0), END - timedelta(microseconds=1))  # just before end: in
    make_run(k1, RunStatus.SUCCEEDED, at(0), END)  # at end: out (next window's)
    assert kpi_report(T0, END).finished == 2
    assert kpi_report(END, END + timedelta(hours=1)).finished == 1
    before, after = kpi_report(*previous_window(T0, END)), kpi_report(T0, END)
    assert before.finished == 0 and after.latency_p50 == approx((10 + 3599.999999) / 2)


def test_latency_is_exact_to_the_microsecond(versions):
    k1 = versions[0]
    make_run(k1, RunStatus.SUCCEEDED, at(0), at(59.999999))
    make_run(k1, RunStatus.SUCCEEDED, at(0.5), at(60.500001))
    report = kpi_report(T0, END)
    assert report.latency_p50 == approx(60.0, abs=1e-7)
    assert report.latency_p99 == approx(59.999999 + 0.99 * 0.000002, abs=1e-7)


@pytest.mark.parametrize("buckets", [2, timedelta(minutes=30)])  # a count, or a width (date_bin on PostgreSQL)
def test_series_buckets(data, buckets):
    first, second = kpi_series(T0, END, buckets)
    assert (first.start, first.end, second.start, second.end) == (T0, at(1800), at(1800), END)
    assert (first.finished, first.succeeded, first.failed, first.cancelled) == (7, 4, 2, 1)
    assert first.completion_rate == approx(4 / 7)
    assert first.latency_p50 == approx(25)
    assert first.runs_per_minute == approx(7 / 30)
    assert (first.steps_finished, first.retry_rate) == (5, approx(0.2))
    assert first.queue_wait_p50 == approx(2.5)  # 0 1 2 3 4 6
    assert (first.effect_keys, first.duplicated_effects, first.dedup_hits) == (4, 2, 2)  # r13's effect too
    assert first.resume_success_rate == 0.5
    assert first.budget_kills == 1
    assert first.tokens_per_task == approx(1600 / 4)
    # r12 finished exactly on the edge between the buckets: it is the second bucket's
    assert (second.finished, second.succeeded, second.failed) == (2, 1, 1)
    assert second.latency_p50 == approx(50)
    assert second.queue_wait_p50 == approx(5) and second.steps_finished == 0
    assert (second.effect_keys, second.compensation_rate) == (1, 0.5)


@pytest.mark.parametrize("buckets", [7, 1, timedelta(minutes=25)])
def test_each_point_equals_the_report_over_its_bucket(data, buckets):
    points = kpi_series(T0, END, buckets)
    assert points[0].start == T0 and points[-1].end == END
    assert all(a.end == b.start for a, b in zip(points, points[1:], strict=False))
    assert sum(p.finished for p in points) == 9
    for point in points:
        report = kpi_report(point.start, point.end)
        for name in ("finished", "succeeded", "failed", "cancelled", "completion_rate", "latency_p50",
                     "latency_p95", "latency_net_p50", "steps_finished", "retry_rate", "queue_wait_p50",
                     "queue_wait_p95", "duplicated_effects", "effect_keys", "budget_kills", "cost_per_task"):
            assert getattr(point, name) == approx(getattr(report, name)) if getattr(report, name) is not None \
                else getattr(point, name) is None, (point.start, name)


def test_bucket_edges_are_exact(versions):
    k1 = versions[0]
    edge = T0 + timedelta(hours=1) / 3
    make_run(k1, RunStatus.SUCCEEDED, at(0), edge - timedelta(microseconds=1))
    make_run(k1, RunStatus.SUCCEEDED, at(0), edge)
    points = kpi_series(T0, END, 3)
    assert points[1].start == edge
    assert [p.finished for p in points] == [1, 1, 0]
    # 7 buckets of an hour do not fall on whole microseconds: edges round down, rows follow them
    seventh = T0 + timedelta(microseconds=3_600_000_000 // 7)
    make_run(k1, RunStatus.FAILED, at(0), seventh)
    make_run(k1, RunStatus.FAILED, at(0), seventh - timedelta(microseconds=1))
    points = kpi_series(T0, END, 7)
    assert points[1].start == seventh
    assert (points[0].failed, points[1].failed) == (1, 1)


def test_state_latency(data):
    rows = state_latency(T0, END, workflow="k")
    assert [(r.workflow, r.state_name, r.attempts) for r in rows] == [("k", "a", 2), ("k", "b", 2)]
    a, b = rows
    assert (a.p50, a.p95) == (approx(6), approx(7.8))  # 4 and 8 s; the lost attempt does not count
    assert (b.p50, b.p95) == (approx(5), approx(5))
    assert state_latency(T0, END, workflow="other") == []
    assert state_latency(T0, END) == rows


def test_query_counts_are_fixed(data):
    with CaptureQueriesContext(connection) as report_queries:
        kpi_report(T0, END, workflow="k", version=1)
    assert len(report_queries) == 6
    counts = []
    for buckets in (3, 60):
        with CaptureQueriesContext(connection) as series_queries:
            kpi_series(T0, END, buckets)
        counts.append(len(series_queries))
    assert counts == [5, 5]
    with CaptureQueriesContext(connection) as state_queries:
        state_latency(T0, END)
    assert len(state_queries) == 1


def test_django_assert_max_num_queries(data, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        kpi_report(T0, END)


def percentile_cont(values: list[float], p: float) -> float | None:
    """The reference: PostgreSQL's definition, linear interpolation between closest ranks."""
    values = sorted(values)
    if not values:
        return None
    pos = p * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


@pytest.mark.parametrize("n", [1, 2, 10, 37])
def test_both_percentile_paths_agree(versions, n):
    """The window-function path (SQLite's) and the database's default path (percentile_cont
    on PostgreSQL) give PostgreSQL's figures, grouped and not, ties and NULLs included."""
    run = make_run(versions[0], RunStatus.SUCCEEDED, at(0), at(1))
    durations: dict[str, list[float]] = {"x": [], "y": []}
    for i in range(n):
        state = "x" if i % 3 else "y"
        seconds = round(((i * 7919) % 97) / 7 + (i % 5) * 0.000001, 6)  # ties, microseconds
        attempt(run, state, at(0), at(10), at(10 + seconds), sequence=i)
        durations[state].append(seconds)
    attempt(run, "x", at(0), None, None, status=AttemptStatus.SCHEDULED, sequence=n)  # NULL duration
    qs = StepAttempt.objects.filter(run=run)
    values = {"d": seconds_between(F("claimed_at"), F("finished_at"))}
    ps = (0, 0.25, 0.5, 0.9, 0.95, 0.99, 1)
    for portable in (True, None):
        overall = percentiles(qs, values, ps, portable=portable)[None]
        everything = durations["x"] + durations["y"]
        assert overall["d_n"] == n
        for p in ps:
            label = f"d_p{p * 100:g}"
            assert overall[label] == approx(percentile_cont(everything, p), abs=1e-6), (portable, p)
        grouped = percentiles(qs, values, ps, {"state": F("state_name")}, portable=portable)
        assert set(grouped) == {(s,) for s in ("x", "y") if durations[s] or s == "x"}
        for (state,), figures in grouped.items():
            assert figures["d_n"] == len(durations[state])
            for p in ps:
                assert figures[f"d_p{p * 100:g}"] == approx(percentile_cont(durations[state], p), abs=1e-6)


def test_change_and_previous_window():
    assert previous_window(T0, END) == (T0 - timedelta(hours=1), T0)
    assert change(0.6, 0.5) == approx(0.2)
    assert change(Decimal("0.30"), Decimal("0.40")) == approx(-0.25)
    assert change(1, 0) is None and change(None, 1) is None and change(1, None) is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        kpi_report(T0, END, version=1)  # a version number needs its workflow
    with pytest.raises(ValueError):
        kpi_report(END, T0)
    with pytest.raises(ValueError):
        kpi_report(T0.replace(tzinfo=None), END)
    with pytest.raises(ValueError):
        kpi_series(T0, END, 0)
    with pytest.raises(ValueError):
        kpi_series(T0, END, 5000)
