"""Page timings at scale (``manage.py bench_pages``): how long the monitoring pages take to answer
on a large history, through the whole Django stack (middleware, views, queries, templates),
with the test client logged in as a superuser.

Each page is measured in one or more variants (a window, a filter); a page's figure is its
slowest variant, so "the KPI dashboard is fast" holds for the 30-day window too, not only for
the default one. Targets are on the p50 (DESIGN.md section 6: KPIs stay fast with 100,000 runs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.test import Client, override_settings
from django.utils import timezone

from orchestrator.models import Run, RunStatus, StepAttempt

BENCH_USER = "bench"
# Page key (as printed on the bench line) -> p50 target in milliseconds.
TARGETS_MS = {"kpi_dashboard_100k": 500.0, "runs_list_100k": 200.0, "run_detail": 200.0, "failures_100k": 500.0}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    page: str  # a key of TARGETS_MS
    variant: str
    url: str
    samples_ms: tuple[float, ...]
    size: int  # bytes of the last answer

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def line(self) -> str:
        return (f"{self.page} {self.variant} ({self.url}): p50 {self.p50:.1f} ms, p95 {self.p95:.1f} ms, "
                f"{len(self.samples_ms)} requests, {self.size / 1024:.0f} KiB")


def bench_client() -> Client:
    """A test client logged in as the superuser ``bench`` (created the first time)."""
    user, created = get_user_model().objects.get_or_create(
        username=BENCH_USER, defaults={"is_superuser": True, "is_staff": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    client = Client()
    client.force_login(user)
    return client


def busiest_run() -> Run | None:
    """The run with the most attempts: the run page's worst case (timeline, attempts, events)."""
    top = (StepAttempt.objects.values("run_id").annotate(n=Count("id")).order_by("-n", "run_id").first())
    return Run.objects.filter(pk=top["run_id"]).first() if top else Run.objects.order_by("-created_at").first()


def page_variants() -> list[tuple[str, str, str]]:
    """(page, variant, url) for every request to time."""
    now = timezone.now()
    def days(n: int) -> str:
        return urlencode({"window": "custom", "start": (now - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M"),
                          "end": now.strftime("%Y-%m-%dT%H:%M")})

    found = [
        ("kpi_dashboard_100k", "last 24 hours", "/dashboards/kpis/"),
        ("kpi_dashboard_100k", "last 7 days", "/dashboards/kpis/?window=week"),
        # the previous 14 days are as full as these: the page reads two long windows
        ("kpi_dashboard_100k", "last 14 days", f"/dashboards/kpis/?{days(14)}"),
        ("kpi_dashboard_100k", "last 30 days", f"/dashboards/kpis/?{days(30)}"),
        ("runs_list_100k", "first page", "/runs/"),
        ("runs_list_100k", "failed runs", f"/runs/?status={RunStatus.FAILED}"),
        ("runs_list_100k", "failed runs, 30 days", f"/runs/?status={RunStatus.FAILED}&window=30d"),
        ("failures_100k", "last 24 hours", "/failures/"),
        ("failures_100k", "last 30 days", "/failures/?window=30d"),
    ]
    busiest = busiest_run()
    if busiest is not None:
        found.append(("run_detail", f"busiest run ({busiest.attempts.count()} attempts)", f"/runs/{busiest.pk}/"))
    parallel = Run.objects.filter(workflow__name="research", status=RunStatus.SUCCEEDED).order_by("-created_at")
    if (run := parallel.first()) is not None:
        found.append(("run_detail", "a research run (parallel branches)", f"/runs/{run.pk}/"))
    return found


def time_page(client: Client, url: str, repeats: int, warmups: int) -> tuple[tuple[float, ...], int]:
    """Milliseconds of ``repeats`` GETs of ``url`` after ``warmups`` untimed ones; each must answer 200."""
    samples = []
    size = 0
    for i in range(warmups + repeats):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}, not 200")
        size = len(response.content)
        if i >= warmups:
            samples.append(elapsed)
    return tuple(samples), size


def measure_pages(repeats: int = 15, warmups: int = 2, progress: Progress = print) -> list[Timing]:
    """Time every page variant; a progress line after each."""
    timings = []
    # The test client calls itself "testserver"; the configured hosts may not include it.
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"]):
        client = bench_client()
        for page, variant, url in page_variants():
            samples, size = time_page(client, url, repeats, warmups)
            timing = Timing(page, variant, url, samples, size)
            timings.append(timing)
            progress(timing.line())
    return timings


def page_figures(timings: list[Timing]) -> dict[str, Timing]:
    """Each page's slowest variant (by p50)."""
    worst: dict[str, Timing] = {}
    for timing in timings:
        if timing.page not in worst or timing.p50 > worst[timing.page].p50:
            worst[timing.page] = timing
    return worst


def summary_lines(timings: list[Timing]) -> tuple[str, str]:
    """The bench line (p50 of each page's slowest variant) and a line with p95s, targets and misses."""
    worst = page_figures(timings)

    def figure(page: str, attr: str) -> str:
        return f"{getattr(worst[page], attr):.1f}" if page in worst else "nan"

    first = "bench: " + " ".join(f"{page}_ms_p50={figure(page, 'p50')}" for page in TARGETS_MS)
    missed = [page for page, target in TARGETS_MS.items() if page not in worst or worst[page].p50 > target]
    second = ("bench: " + " ".join(f"{page}_ms_p95={figure(page, 'p95')}" for page in TARGETS_MS)
              + " targets_ms_p50=" + "/".join(f"{t:.0f}" for t in TARGETS_MS.values())
              + " missed=" + (",".join(missed) or "none"))
    return first, second
