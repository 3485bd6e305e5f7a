"""The history loader (``load_history``) and the page benchmark (``bench_pages``): a small history
has the shape of a real one (counts, dates over the window, status mix, consistent rows), and
the pages answer on it with figures that come from it."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone

from orchestrator.engine.fingerprints import fingerprint
from orchestrator.loadgen import LoadReport, ensure_demo_workflows, generate, load_history
from orchestrator.loadgen_runs import Ids
from orchestrator.models import Effect, Event, EventKind, Run, RunStatus, StepAttempt

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

RUNS, EVENTS_PER_RUN, DAYS = 300, 10, 30


@pytest.fixture
def history() -> LoadReport:
    return load_history(RUNS, events_per_run=EVENTS_PER_RUN, days=DAYS, seed=3, stream=None)


def test_the_history_has_the_runs_events_and_attempts_asked_for(history):
    assert Run.objects.count() == history.runs == RUNS
    assert Event.objects.count() == history.events
    assert StepAttempt.objects.count() == history.attempts > RUNS
    assert Effect.objects.count() == history.effects > 0
    # The mix is steered toward the events asked for (a share of long workflows overshoots a little).
    assert EVENTS_PER_RUN * 0.9 <= history.events / RUNS <= EVENTS_PER_RUN * 1.6
    assert Run.objects.values("workflow").distinct().count() >= 6  # every demo workflow shows up
    assert Event.objects.filter(kind=EventKind.RUN_STARTED).count() == RUNS


def test_dates_spread_over_the_window_and_agree_with_each_other(history):
    now = timezone.now()
    span = Run.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    assert now - timedelta(days=DAYS) <= span["first"] < now - timedelta(days=DAYS - 2)
    assert now - timedelta(days=2) < span["last"] <= now
    days = {moment.date() for moment in Run.objects.values_list("created_at", flat=True)}
    assert len(days) >= DAYS - 4
    terminal = Run.objects.filter(status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED))
    assert not terminal.filter(Q(finished_at__isnull=True) | Q(finished_at__lt=F("created_at"))).exists()
    assert not terminal.filter(finished_at__gt=now).exists()
    assert not Run.objects.filter(status=RunStatus.RUNNING, finished_at__isnull=False).exists()
    attempts = StepAttempt.objects
    assert not attempts.filter(Q(scheduled_at__lt=F("run__created_at")) | Q(claimed_at__lt=F("scheduled_at"))
                               | Q(finished_at__lt=F("claimed_at")) | Q(finished_at__gt=F("run__finished_at"))).exists()
    assert not Event.objects.filter(Q(created_at__lt=F("run__created_at")) | Q(created_at__gt=F("run__finished_at")))\
        .exists()
    # Events point at attempts of their own run, and each attempt has its scheduled and claimed events.
    assert not Event.objects.filter(attempt__isnull=False).exclude(attempt__run=F("run")).exists()
    per_attempt = Event.objects.filter(kind__in=(EventKind.STEP_SCHEDULED, EventKind.STEP_CLAIMED)) \
        .values("attempt").annotate(n=Count("id"))
    assert len(per_attempt) == history.attempts and {row["n"] for row in per_attempt} == {2}


def test_the_status_mix_and_failures_look_like_the_engine_made_them(history):
    counts = dict(Run.objects.values_list("status").annotate(n=Count("id")))
    assert counts == dict(history.statuses)
    assert counts[RunStatus.SUCCEEDED] > RUNS * 0.75
    assert counts[RunStatus.FAILED] >= RUNS * 0.04 and counts[RunStatus.CANCELLED] >= 1
    assert counts[RunStatus.RUNNING] >= 1
    failed = list(Run.objects.filter(status=RunStatus.FAILED))
    assert len({run.failure_mode for run in failed}) >= 3
    for run in failed:
        assert run.failure_mode and run.error["type"] and run.failure_fingerprint
        assert run.failure_fingerprint == fingerprint(run.error, run.failure_state)
        if run.failed_attempt_id is not None:
            assert run.failed_attempt.run_id == run.pk and run.failed_attempt.state_name == run.failure_state
    assert not Run.objects.filter(status=RunStatus.SUCCEEDED).exclude(failure_fingerprint="").exists()
    assert StepAttempt.objects.filter(status="running", run__status=RunStatus.RUNNING,
                                      lease_expires_at__gt=timezone.now()).exists()
    succeeded = Run.objects.filter(status=RunStatus.SUCCEEDED)
    assert succeeded.filter(tokens_used__gt=0).exists() and succeeded.filter(resume_count__gt=0).exists()
    assert StepAttempt.objects.filter(attempt__gt=1, resumed_from__isnull=True).exists()  # retries
    assert StepAttempt.objects.exclude(branch_path="").exists()  # parallel branches


def test_the_same_seed_builds_the_same_history():
    plans, now = ensure_demo_workflows(), timezone.now()

    def build() -> list[tuple]:
        runs = generate(50, events_per_run=10, days=5, seed=11, now=now, ids=Ids(), plans=plans)
        return [(b.run, b.attempts, b.events) for b in runs]

    assert build() == build()


def test_load_history_refuses_a_database_with_runs_unless_appending(history):
    with pytest.raises(CommandError, match="already holds 300 runs; pass --append"):
        call_command("load_history", "--runs", "5", stdout=io.StringIO())
    out = io.StringIO()
    call_command("load_history", "--runs", "5", "--seed", "3", "--append", "--verbosity", "0", stdout=out)
    assert out.getvalue().startswith("loaded 5 runs") and Run.objects.count() == RUNS + 5


def test_the_pages_show_figures_of_the_loaded_history(history, admin_client):
    now = timezone.now()
    kpis = admin_client.get("/dashboards/kpis/", {"window": "custom", "start": (now - timedelta(days=DAYS + 1))
                                                  .strftime("%Y-%m-%dT%H:%M"), "end": (now + timedelta(days=1))
                                                  .strftime("%Y-%m-%dT%H:%M")})
    assert kpis.status_code == 200
    report = kpis.context["report"]
    assert report.succeeded == history.statuses[RunStatus.SUCCEEDED]
    assert report.failed == history.statuses[RunStatus.FAILED] and report.started == RUNS
    assert f"{report.succeeded:,} succeeded" in kpis.content.decode()
    day = admin_client.get("/dashboards/kpis/")
    assert day.status_code == 200
    in_day = Run.objects.filter(status=RunStatus.SUCCEEDED, finished_at__gte=day.context["window"].start,
                                finished_at__lt=day.context["window"].end).count()
    assert day.context["report"].succeeded == in_day

    failures = admin_client.get("/failures/", {"window": "30d"})
    assert failures.status_code == 200
    loaded = set(Run.objects.filter(status=RunStatus.FAILED).values_list("failure_fingerprint", flat=True))
    assert {cluster.fingerprint for cluster in failures.context["report"].clusters} == loaded
    assert all(f"fingerprint={fp}" in failures.content.decode() for fp in loaded)

    runs = admin_client.get("/runs/")
    assert runs.status_code == 200
    newest = Run.objects.order_by("-created_at", "-id")[:50]
    assert [run.pk for run in runs.context["page"].runs] == [run.pk for run in newest]
    failed = admin_client.get("/runs/", {"status": "failed"})
    assert {run.status for run in failed.context["page"].runs} == {RunStatus.FAILED}

    busiest = Run.objects.annotate(n=Count("attempts")).order_by("-n").first()
    detail = admin_client.get(f"/runs/{busiest.pk}/")
    assert detail.status_code == 200
    assert detail.context["attempts_total"] == busiest.n > 3
    assert all(a.state_name in detail.content.decode() for a in busiest.attempts.all())


def test_bench_pages_loads_what_is_missing_and_prints_the_bench_line():
    out = io.StringIO()
    call_command("bench_pages", "--runs", "40", "--repeats", "2", "--warmups", "0", "--no-migrate", stdout=out)
    assert Run.objects.count() == 40
    lines = out.getvalue().splitlines()
    assert lines[0] == "the database holds 0 runs: loading 40 more"
    assert re.fullmatch(r"bench: kpi_dashboard_100k_ms_p50=\d+\.\d runs_list_100k_ms_p50=\d+\.\d "
                        r"run_detail_ms_p50=\d+\.\d failures_100k_ms_p50=\d+\.\d", lines[-2]), lines[-2]
    assert re.fullmatch(r"bench: kpi_dashboard_100k_ms_p95=\d+\.\d runs_list_100k_ms_p95=\d+\.\d "
                        r"run_detail_ms_p95=\d+\.\d failures_100k_ms_p95=\d+\.\d targets_ms_p50=500/200/200/500 "
                        r"missed=(none|[a-z0-9_,]+)", lines[-1]), lines[-1]
    assert any(line.startswith("run_detail busiest run") for line in lines)
