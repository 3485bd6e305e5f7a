"""The dashboard's KPIs over the API: the same figures as monitoring.kpis for the window asked
(and a workflow), the window before, the series and each state's latency; a bad window or
workflow is refused naming the parameter."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from monitoring.kpis import kpi_report
from orchestrator.engine.workflows import publish
from orchestrator.models import Run, RunStatus

from .conftest import FLOW, bearer, call

pytestmark = pytest.mark.django_db


def finish(version, status: str, minutes_ago: float = 5, took: float = 60) -> Run:
    end = timezone.now() - timedelta(minutes=minutes_ago)
    run = Run.objects.create(workflow=version.workflow, version=version, status=status, finished_at=end)
    Run.objects.filter(pk=run.pk).update(created_at=end - timedelta(seconds=took))
    return run


@pytest.fixture
def history(flow):
    other = publish({**FLOW, "name": "other"})[0]
    finish(flow, RunStatus.SUCCEEDED, took=30)
    finish(flow, RunStatus.FAILED)
    finish(other, RunStatus.SUCCEEDED)
    finish(flow, RunStatus.SUCCEEDED, minutes_ago=90)  # in the hour before


@pytest.fixture
def viewer(user):
    return bearer(user("viewer"))


def test_the_kpis_of_the_last_hour_against_the_hour_before(client, history, viewer):
    status, body = call(client, "get", "/kpis?window=hour", viewer)
    assert status == 200 and body["window"]["name"] == "hour" and body["window"]["bucket_seconds"] == 300
    report = body["report"]
    assert (report["finished"], report["succeeded"], report["failed"]) == (3, 2, 1)
    assert report["completion_rate"] == pytest.approx(2 / 3)
    assert body["previous"]["finished"] == 1 and body["changes"]["completion_rate"] == pytest.approx(-1 / 3)
    assert len(body["series"]) == 12 and sum(point["finished"] for point in body["series"]) == 3


def test_the_figures_are_the_dashboards_own(client, history, viewer):
    _, body = call(client, "get", "/kpis?window=day&workflow=greet", viewer)
    start, end = (datetime.fromisoformat(body["window"][key]) for key in ("start", "end"))
    expected = kpi_report(start, end, workflow="greet")
    report = body["report"]
    assert body["workflow"] == "greet" and report["finished"] == expected.finished == 3
    assert report["latency_p50"] == pytest.approx(expected.latency_p50)
    assert Decimal(str(report["cost"])) == expected.cost


def test_a_custom_window_and_a_version(client, history, viewer):
    start = (timezone.now() - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    status, body = call(client, "get", f"/kpis?window=custom&start={start}&end={timezone.now().date() + timedelta(1)}"
                                       "&workflow=greet&version=1", viewer)
    assert status == 200 and body["window"]["name"] == "custom" and body["version"] == 1
    assert body["report"]["finished"] == 3


@pytest.mark.parametrize("query, field", [
    ("window=year", "window"),
    ("window=custom&end=2025-01-02", "start"),
    ("window=custom&start=2025-01-02&end=2025-01-01", "end"),
    ("window=custom&start=soon&end=2025-01-01", "start"),
    ("workflow=nope", "workflow"),
    ("workflow=greet&version=9", "version"),
    ("version=1", "version"),
    ("version=0", "version"),
])
def test_a_bad_window_or_filter_names_the_parameter(client, flow, viewer, query, field):
    status, body = call(client, "get", f"/kpis?{query}", viewer)
    assert (status, body["code"], body["field"]) == (422, "invalid", field), body


def test_kpis_need_the_view_permission(client, flow, user):
    assert call(client, "get", "/kpis")[0] == 401
    status, body = call(client, "get", "/kpis", bearer(user(None, name="nobody")))
    assert status == 403 and "orchestrator.view_run" in body["message"]
