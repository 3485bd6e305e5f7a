"""The KPI dashboard (/dashboards/kpis/): login, the figures it shows against kpi_report on a
small data set built with fixed timestamps, its filters in the URL, clear 400s for bad
windows, the empty state, charts that are well-formed SVG without scripts, and a pinned
query count."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitoring.charts import DURATION, PERCENT, Series, per_minute, time_chart
from monitoring.kpis import kpi_report, kpi_series, previous_window
from monitoring.templatetags.ratchet_ui import duration, money, percent
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Effect, EffectStatus, FailureMode, Run, RunStatus, StepAttempt

pytestmark = pytest.mark.django_db

URL = reverse("monitoring:kpi_dashboard")
T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
END = T0 + timedelta(hours=1)
WINDOW = {"window": "custom", "start": "2025-03-03T10:00", "end": "2025-03-03T11:00"}
SVG = "{http://www.w3.org/2000/svg}"
# Workflow versions (the filters' choices), "any run at all?", two reports (6 each), the series (5),
# per-state latency (1); besides the session, the user and the layout's permission checks.
PAGE_QUERIES = 20
AUTH_QUERIES = 4  # session, user, and the layout's two permission lookups (the user's role)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_run(version, status, created, finished=None, **fields) -> Run:
    run = Run.objects.create(workflow=version.workflow, version=version, status=status, finished_at=finished, **fields)
    Run.objects.filter(pk=run.pk).update(created_at=created)  # auto_now_add
    return run


def attempt(run, state, scheduled, claimed, finished, status=AttemptStatus.SUCCEEDED, **fields) -> StepAttempt:
    return StepAttempt.objects.create(run=run, state_name=state, sequence=fields.pop("sequence", 1), status=status,
                                      scheduled_at=scheduled, claimed_at=claimed, finished_at=finished, **fields)


@pytest.fixture
def versions():
    def definition(name, **extra):
        return {"name": name, "start_at": "a", "states": {"a": {"type": "succeed"}}, **extra}

    k1, _ = publish(definition("k"))
    k2, _ = publish(definition("k", description="second"))
    other, _ = publish(definition("other"))
    return k1, k2, other


@pytest.fixture
def data(versions):
    """Five runs finished in [T0, END), two in the hour before, one still running."""
    k1, k2, other = versions
    S, F, C = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED
    r1 = make_run(k1, S, at(0), at(10), tokens_used=100, cost_used=Decimal("0.10"))  # wall 10
    r2 = make_run(k1, S, at(600), at(630), human_wait_seconds=10, tokens_used=200, cost_used=Decimal("0.20"))  # 30
    r3 = make_run(k1, F, at(1200), at(1260), failure_mode=FailureMode.COST_EXPLOSION, tokens_used=300,
                  cost_used=Decimal("0.30"))
    make_run(k2, S, at(1800), at(1820))  # wall 20
    make_run(other, C, at(2400), at(2410), failure_mode=FailureMode.CANCELLED)
    make_run(k1, RunStatus.RUNNING, at(3000))
    # The hour before: one success (wall 10), one failure: completion 50 %.
    p1 = make_run(k1, S, at(-1800), at(-1790), tokens_used=100, cost_used=Decimal("0.50"))
    make_run(k1, F, at(-1200), at(-1100), failure_mode=FailureMode.HANDLER_ERROR)
    attempt(r1, "a", at(0), at(1), at(5))
    attempt(r2, "a", at(600), at(602), at(610), status=AttemptStatus.FAILED)
    attempt(r2, "a", at(610), at(613), at(620), attempt=2)  # a retry
    attempt(r3, "b", at(1200), at(1204), at(1250))
    attempt(p1, "a", at(-1800), at(-1799), at(-1795))
    Effect.objects.create(run=r2, key="charge", state_name="a", intent_at=at(605), status=EffectStatus.CONFIRMED,
                          duplicates=1, dedup_hits=2)
    Effect.objects.create(run=r1, key="mail", state_name="a", intent_at=at(2), status=EffectStatus.CONFIRMED)


def tile_text(html: str, key: str) -> str:
    found = re.search(rf'<div class="tile kpi-tile" id="tile-{key}".*?</div>', html, re.S)
    assert found, f"no tile {key}"
    return unescape(re.sub(r"<[^>]+>", " ", found.group(0)))


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", html, re.S)


# --- login and navigation -------------------------------------------------------------------------


def test_the_dashboard_needs_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response.url


def test_the_dashboard_is_in_the_navigation(viewer, data):
    html = viewer.get(URL).content.decode()
    assert f'<a href="{URL}" aria-current="page">Dashboards</a>' in html


# --- the figures ----------------------------------------------------------------------------------


def test_every_tile_shows_what_kpi_report_says(viewer, data):
    response = viewer.get(URL, WINDOW)
    assert response.status_code == 200
    html = response.content.decode()
    report = kpi_report(T0, END)
    assert response.context["report"] == report
    assert response.context["before"] == kpi_report(*previous_window(T0, END))
    # By hand: 5 finished, 3 succeeded (walls 10, 30, 20), 1 killed by its budget, 1 retry of 4 steps.
    assert (report.finished, report.succeeded, report.budget_kills, report.retries) == (5, 3, 1, 1)
    assert "60.0 %" in tile_text(html, "completion_rate")
    assert "3 succeeded of 5 finished (1 failed, 1 cancelled)" in tile_text(html, "completion_rate")
    assert duration(20) in tile_text(html, "latency_p50")
    assert money(Decimal("0.2")) in tile_text(html, "cost_per_task")  # $0.60 / 3
    assert "25.0 %" in tile_text(html, "retry_rate")
    assert "2 re-executions prevented" in tile_text(html, "duplicate_effect_rate")
    for tile in response.context["tiles"]:
        assert tile.value in tile_text(html, tile.key)
    shown = {tile.key: tile for tile in response.context["tiles"]}
    assert shown["completion_rate"].value == percent(report.completion_rate)
    assert shown["latency_p95"].value == duration(report.latency_p95)
    assert shown["queue_wait_p95"].value == duration(report.queue_wait_p95)
    assert shown["runs_per_minute"].value == per_minute(report.runs_per_minute) == "0.0833 /min"  # 5 in 60 min
    assert shown["budget_kills"].value == "1"
    # Every KPI of DESIGN.md section 6 has its tile.
    assert {"completion_rate", "latency_p50", "latency_p95", "latency_p99", "latency_net_p50",
            "resume_success_rate", "duplicate_effect_rate", "cost_per_task", "runs_per_minute", "steps_per_minute",
            "queue_wait_p50", "queue_wait_p95", "retry_rate", "compensation_rate", "approval_wait_p50",
            "budget_kills"} <= set(shown)


def test_each_tile_says_its_change_against_the_window_before_in_words(viewer, data):
    html = viewer.get(URL, WINDOW).content.decode()
    completion = tile_text(html, "completion_rate")  # 50 % before, 60 % now: +20 %
    assert "↑" in completion and "up 20.0 % against the 1 hour before (better)" in completion
    assert "before: 50.0 %" in completion
    cost = tile_text(html, "cost_per_task")  # $0.50 before, $0.20 now: -60 %
    assert "↓" in cost and "down 60.0 % against the 1 hour before (better)" in cost
    kills = tile_text(html, "budget_kills")  # none before
    assert "up from zero" in kills and "(worse)" in kills
    assert "no earlier figure to compare with" in tile_text(html, "resume_success_rate")


def test_charts_and_their_tables_show_the_series(viewer, data):
    response = viewer.get(URL, WINDOW)
    points = kpi_series(T0, END, timedelta(minutes=5))
    charts = {chart.key: chart for chart in response.context["charts"]}
    assert {"completion-rate", "latency", "throughput", "cost-per-task", "queue-wait",
            "retries-and-compensations"} <= set(charts)
    completion = charts["completion-rate"]
    assert len(completion.rows) == len(points) == 12
    assert [row[1] for row in completion.rows] == [PERCENT(p.completion_rate) for p in points]
    assert completion.rows[0] == ["10:00 – 10:05", "100 %"]
    assert completion.rows[1][1] == "no data"
    latency = charts["latency"]
    assert latency.columns == ["Time", "p50 (seconds)", "p95 (seconds)"]
    assert [row[2] for row in latency.rows] == [DURATION(p.latency_p95) for p in points]
    html = response.content.decode()
    assert html.count('<details class="chart-data">') == len(charts)
    assert "Data table: task completion rate" in html


def test_the_state_latency_table(viewer, data):
    response = viewer.get(URL, WINDOW)
    rows = {(s.workflow, s.state_name): s for s in response.context["states"]}
    assert rows[("k", "a")].attempts == 3 and rows[("k", "b")].attempts == 1
    section = response.content.decode().split('id="state-latency"')[1]
    assert "Latency per state" in response.content.decode() and duration(46) in section


def test_workflow_and_version_filters_stay_in_the_url(viewer, data):
    response = viewer.get(URL, {**WINDOW, "workflow": "k", "version": "1"})
    assert response.status_code == 200
    assert response.context["report"] == kpi_report(T0, END, workflow="k", version=1)
    assert response.context["report"].finished == 3
    html = response.content.decode()
    assert '<option value="k" selected>' in html and '<option value="1" selected>v1</option>' in html
    # The window links keep the workflow and version (and drop the custom start and end).
    assert 'href="?window=hour&amp;workflow=k&amp;version=1"' in html


def test_the_preset_windows_end_now(viewer, data):
    for name, length in (("hour", timedelta(hours=1)), ("day", timedelta(days=1)), ("week", timedelta(days=7))):
        response = viewer.get(URL, {"window": name})
        assert response.status_code == 200
        window = response.context["window"]
        assert window.end - window.start == length and window.name == name
        assert len(response.context["charts"][0].rows) in (12, 24, 28)
    assert viewer.get(URL).context["window"].name == "day"


def test_a_quiet_window_says_so(viewer, data):
    response = viewer.get(URL, {"window": "custom", "start": "2024-01-01", "end": "2024-01-02"})
    assert response.status_code == 200
    assert "Nothing ran in this window" in response.content.decode()


# --- bad input and the empty installation -------------------------------------------------------------


@pytest.mark.parametrize("params, message", [
    ({"window": "fortnight"}, "unknown window &#x27;fortnight&#x27;; use one of hour, day, week, custom"),
    ({"window": "custom", "start": "yesterday", "end": "2025-03-03T11:00"}, "start must be a date or date-time"),
    ({"window": "custom", "start": "2025-02-30T10:00", "end": "2025-03-03T11:00"}, "start must be a date"),
    ({"window": "custom", "end": "2025-03-03T11:00"}, "a custom window needs its start"),
    ({"window": "custom", "start": "2025-03-03T11:00", "end": "2025-03-03T10:00"}, "must end after it starts"),
    ({"window": "custom", "start": "2020-01-01", "end": "2025-01-01"}, "at most 366 days"),
    ({"workflow": "nope"}, "no workflow is called &#x27;nope&#x27;"),
    ({"version": "2"}, "choose a workflow to filter by one of its versions"),
    ({"workflow": "k", "version": "x"}, "version must be a positive number"),
    ({"workflow": "other", "version": "2"}, "other has no version 2"),
])
def test_bad_parameters_get_a_400_with_a_message(viewer, data, params, message):
    response = viewer.get(URL, params)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and 'role="alert"' in html
    assert "<svg" not in html  # no figures for a window nobody asked for


def test_an_empty_installation_says_what_to_do(viewer):
    response = viewer.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "No runs yet" in html and reverse("monitoring:workflow_detail", args=["order_fulfilment"]) in html
    assert "load_demo" in html and "<svg" not in html


# --- charts -------------------------------------------------------------------------------------------


def test_the_charts_are_well_formed_svg_without_scripts(viewer, data):
    html = viewer.get(URL, WINDOW).content.decode()
    drawn = svgs(html)
    assert len(drawn) == 6
    for text in drawn:
        root = ET.fromstring(text)
        assert root.tag == f"{SVG}svg" and root.get("role") == "img"
        title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
        assert title is not None and title.text and desc is not None and "data table" in desc.text
        assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
        for element in root.iter():
            assert element.tag != f"{SVG}script" and "foreignObject" not in element.tag
            assert not any(name.lower().startswith("on") for name in element.attrib), element.attrib
        texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
        assert "time (UTC)" in texts  # the x axis says what it is
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_a_chart_escapes_its_text_and_leaves_gaps_for_missing_values():
    buckets = [(T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1)) for i in range(4)]
    chart = time_chart('x"><script>alert(1)</script>', "<b>Evil</b> & co", buckets,
                       [Series("<img src=x onerror=alert(1)>", [0.5, None, 0.25, 1.0]), Series("b", [None] * 4)],
                       unit=PERCENT)
    root = ET.fromstring(chart.svg)
    assert "<script" not in chart.svg and "<img" not in chart.svg
    assert root.find(f"{SVG}title").text == "<b>Evil</b> & co"
    assert len(root.findall(f".//{SVG}polyline")) == 1  # 0.5 | gap | 0.25 - 1.0
    assert [row[1:] for row in chart.rows] == [["50 %", "no data"], ["no data", "no data"], ["25 %", "no data"],
                                               ["100 %", "no data"]]
    assert "100 %" in " ".join(t.text or "" for t in root.iter(f"{SVG}text"))  # rates always reach 100 %
    bars = time_chart("bars", "Bars", buckets, [Series("n", [1, 2, None, 4])], unit=DURATION, kind="bar")
    assert len(ET.fromstring(bars.svg).findall(f".//{SVG}rect")) >= 3
    empty = time_chart("empty", "Empty", buckets, [Series("n", [None] * 4)], unit=DURATION)
    assert "No data in this window" in empty.svg
    with pytest.raises(ValueError):
        time_chart("bad", "Bad", buckets, [Series("n", [1])], unit=DURATION)


# --- cost ---------------------------------------------------------------------------------------------


def test_the_page_costs_a_fixed_number_of_queries(viewer, data, versions):
    k1, k2, other = versions
    counts = []
    for extra in range(2):
        if extra:  # ten times the runs, attempts on new states, another workflow
            for i in range(50):
                run = make_run(k2 if i % 2 else k1, RunStatus.SUCCEEDED, at(60 * i), at(60 * i + 30))
                attempt(run, f"s{i % 7}", at(60 * i), at(60 * i + 1), at(60 * i + 20))
            publish({"name": "third", "start_at": "a", "states": {"a": {"type": "succeed"}}})
        for params in (WINDOW, {"window": "week", "workflow": "k"}):
            with CaptureQueriesContext(connection) as queries:
                assert viewer.get(URL, params).status_code == 200
            own = [q for q in queries if not re.search(r'FROM "(django_session|auth_user|auth_permission)"', q["sql"])]
            counts.append((len(own), len(queries) - len(own)))
    assert counts == [(PAGE_QUERIES, AUTH_QUERIES)] * 4, counts
