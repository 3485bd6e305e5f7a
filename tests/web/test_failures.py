"""The failure dashboard: failed runs grouped by mode (with what to do) and by cause, each
cluster drilling down to its runs; bad filters get a message; a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitoring.failure_trends import failure_trend
from orchestrator.engine import clock
from orchestrator.engine.runs import start_run
from orchestrator.models import Run, RunStatus
from orchestrator.roles import ensure_role_groups

from ..engine.test_transitions import drain
from ..workflows import ORDER

pytestmark = pytest.mark.django_db(transaction=True)


def rejected(order_id: str) -> Run:
    return drain(start_run("order_fulfilment", {**ORDER, "order_id": order_id, "items": []})[0])


def test_failures_need_login(client):
    response = client.get(reverse("monitoring:failures"))
    assert response.status_code == 302 and "/login/" in response.url


def test_runs_failing_for_the_same_cause_form_one_cluster_that_drills_down_to_them(viewer, demos):
    first, second = rejected("R-1"), rejected("R-22")
    ok = drain(start_run("order_fulfilment", ORDER)[0])
    assert first.status == second.status == RunStatus.FAILED and ok.status == RunStatus.SUCCEEDED
    assert first.failure_fingerprint == second.failure_fingerprint != ""
    text = viewer.get(reverse("monitoring:failures")).content.decode()
    assert "2 failed runs" in text and "fail state on purpose" in text  # the mitigation of "rejected"
    assert f"fingerprint={first.failure_fingerprint}" in text
    listed = viewer.get(reverse("monitoring:run_list"), {"status": "failed", "fingerprint": first.failure_fingerprint})
    body = listed.content.decode()
    assert str(first.pk)[:8] in body and str(second.pk)[:8] in body and str(ok.pk)[:8] not in body


@pytest.mark.parametrize(("query", "says"), [({"window": "1y"}, "unknown time range"),
                                             ({"workflow": "nope"}, "no workflow named")])
def test_a_bad_filter_gets_a_message_not_a_500(viewer, demos, query, says):
    response = viewer.get(reverse("monitoring:failures"), query)
    assert response.status_code == 400 and says in response.content.decode()


def test_a_bad_fingerprint_filter_on_the_runs_list_gets_a_message(viewer):
    response = viewer.get(reverse("monitoring:run_list"), {"fingerprint": "<script>"})
    assert response.status_code == 400 and "16 hexadecimal characters" in response.content.decode()


def test_the_failure_dashboard_costs_a_fixed_number_of_queries(viewer, demos):
    counts = []
    for order in ("Q-1", "Q-2"):
        rejected(order)
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(reverse("monitoring:failures")).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_an_operator_acknowledges_a_cluster_with_a_note_and_a_viewer_may_not(client, django_user_model, demos):
    run = rejected("A-1")
    form = {"workflow": "order_fulfilment", "fingerprint": run.failure_fingerprint, "note": "empty carts: fix in v2"}
    viewer = django_user_model.objects.create_user("vera", password="pw")
    viewer.groups.add(ensure_role_groups()["viewer"])
    client.force_login(viewer)
    assert client.post(reverse("monitoring:acknowledge_cluster"), form).status_code == 403
    operator = django_user_model.objects.create_user("otto", password="pw")
    operator.groups.add(ensure_role_groups()["operator"])
    client.force_login(operator)
    response = client.post(reverse("monitoring:acknowledge_cluster"), form, follow=True)
    text = response.content.decode()
    assert "acknowledged</span> by otto" in text and "empty carts: fix in v2" in text
    assert client.post(reverse("monitoring:acknowledge_cluster"), {**form, "note": ""}, follow=True).status_code == 200


def test_trends_chart_failures_by_mode_and_compare_with_the_window_before(viewer, demos):
    # The engine's clock is the database's: measured now, before travelling, it stays a
    # few microseconds for the travels below. Measured inside the first travel (when the last
    # measurement was older than clock.REFRESH_SECONDS), it would put every later run 30 h ahead.
    clock.sync()
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=30), tick=False):  # the 24 h before this window
        rejected("P-1")
    # Each run finishes mid-bucket: the engine's clock is the database's, a few microseconds off
    # this process's, so a run placed on a bucket's edge could land in the bucket before it.
    for hours_ago, order in ((19, "C-1"), (1.5, "C-2"), (0.5, "C-3")):
        with time_machine.travel(now - timedelta(hours=hours_ago), tick=False):
            rejected(order)
    trend = failure_trend(now - timedelta(days=1), now)
    assert trend.modes["rejected"].runs == 3 and trend.modes["rejected"].previous == 1
    assert trend.modes["rejected"].change_words == "up 200 %" and trend.previous_total == 1
    counts = [int(row[1]) for row in trend.chart.rows]
    assert sum(counts) == 3 and counts[-1] == 2 and counts[2] == 1  # 19 h ago: the third bucket of two hours
    text = viewer.get(reverse("monitoring:failures")).content.decode()
    assert 'id="chart-failures-by-mode"' in text and "<td class=\"trend\">1 <span class=\"change\">(up 200 %)" in text
