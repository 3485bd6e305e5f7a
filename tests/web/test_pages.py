"""Ratchet's own pages: login everywhere, what each page shows, its query count, its actions
with their permissions, and clear messages for bad filters and bad input."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind, Run, RunStatus

from ..engine.test_transitions import drain
from ..workflows import ORDER

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = ["monitoring:home", "monitoring:workflow_list", "monitoring:run_list"]


def finished_order(status: str = "succeeded") -> Run:
    order = dict(ORDER) if status == "succeeded" else {**ORDER, "items": []}
    return drain(start_run("order_fulfilment", order)[0])


# --- login --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_every_page_needs_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and "/login/" in response.url


def test_run_and_workflow_pages_need_login(client, demos):
    run = finished_order()
    for url in (reverse("monitoring:run_detail", args=[run.pk]),
                reverse("monitoring:workflow_detail", args=["order_fulfilment"]),
                reverse("monitoring:run_events", args=[run.pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response.url, url


# --- home ---------------------------------------------------------------------------------------------


def test_a_new_installation_is_shown_how_to_start_each_demo(viewer, demos):
    response = viewer.get(reverse("monitoring:home"))
    text = response.content.decode()
    assert "No runs yet" in text
    for name in ("order_fulfilment", "research", "support_network", "order_assistant"):
        assert reverse("monitoring:workflow_detail", args=[name]) in text


def test_home_shows_runs_failures_and_no_worker_warning(viewer, demos):
    finished_order()
    failed = finished_order("failed")
    assert failed.status == RunStatus.FAILED
    text = viewer.get(reverse("monitoring:home")).content.decode()
    assert "No runs yet" not in text
    assert "No worker is alive" in text
    assert f"failure_mode={failed.failure_mode}" in text


# --- workflows -----------------------------------------------------------------------------------------


def test_the_workflow_list_shows_topology_version_and_the_days_runs(viewer, demos):
    finished_order()
    text = viewer.get(reverse("monitoring:workflow_list")).content.decode()
    assert "supervisor_worker" in text or "Supervisor" in text
    assert "1 / 1" in text  # order_fulfilment: one finished run in the last day, and it succeeded


def test_the_workflow_page_draws_its_graph_and_prefills_the_start_form(operator, demos):
    response = operator.get(reverse("monitoring:workflow_detail", args=["order_assistant"]))
    text = response.content.decode()
    assert "<svg" in text and "Start run" in text
    assert "A-1001" in text  # the sample input of the version


def test_a_viewer_sees_the_workflow_but_no_start_form_and_may_not_post_one(viewer, demos):
    text = viewer.get(reverse("monitoring:workflow_detail", args=["order_assistant"])).content.decode()
    assert 'name="input"' not in text
    response = viewer.post(reverse("monitoring:start_run", args=["order_assistant"]), {"input": "{}"})
    assert response.status_code == 403 and not Run.objects.exists()


def test_starting_a_run_from_the_page_leads_to_it(operator, demos):
    payload = {"question": "Where?", "order_id": "A-1001", "customer": "ann@example.com"}
    response = operator.post(reverse("monitoring:start_run", args=["order_assistant"]),
                             {"input": json.dumps(payload), "idempotency_key": "page-1"})
    run = Run.objects.get()
    assert response.status_code == 302 and response.url == reverse("monitoring:run_detail", args=[run.pk])
    assert run.input == payload and run.started_by.username == "otto" and run.idempotency_key == "page-1"


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "not valid JSON"),
    ('{"order_id": "A-1001"}', "question"),
    ('{"question": "Where?", "order_id": 7, "customer": "a@b.c"}', "order_id"),
])
def test_bad_input_is_refused_beside_the_field_and_nothing_starts(operator, demos, text, says):
    response = operator.post(reverse("monitoring:start_run", args=["order_assistant"]), {"input": text})
    assert response.status_code == 400
    assert says in response.content.decode() and not Run.objects.exists()
    assert text.replace('"', "&quot;") in response.content.decode()  # what was typed is kept


# --- runs list -------------------------------------------------------------------------------------------


def test_the_runs_list_filters_by_status_and_shows_the_failure_reason(viewer, demos):
    ok, failed = finished_order(), finished_order("failed")
    text = viewer.get(reverse("monitoring:run_list"), {"status": "failed"}).content.decode()
    assert str(failed.pk)[:8] in text and str(ok.pk)[:8] not in text
    assert failed.error["message"][:40] in text


@pytest.mark.parametrize(("query", "says"), [
    ({"status": "exploded"}, "unknown status"), ({"version": "x"}, "version must be"),
    ({"window": "1y"}, "unknown time range"), ({"failure_mode": "gremlins"}, "unknown failure mode"),
])
def test_a_bad_filter_gets_a_clear_message_not_a_500(viewer, query, says):
    response = viewer.get(reverse("monitoring:run_list"), query)
    assert response.status_code == 400 and says in response.content.decode()


def test_the_runs_list_pages_by_cursor_and_a_bad_cursor_is_ignored(viewer, demos):
    runs = [start_run("order_fulfilment", {**ORDER, "order_id": f"P-{i}"})[0] for i in range(3)]
    from monitoring import runlist

    page = runlist.runs_page(runlist.RunFilter(), size=2)
    assert [r.pk for r in page.runs] == [runs[2].pk, runs[1].pk] and page.has_more
    second = runlist.runs_page(runlist.RunFilter(), page.next_cursor, size=2)
    assert [r.pk for r in second.runs] == [runs[0].pk] and not second.has_more
    assert viewer.get(reverse("monitoring:run_list"), {"after": "%%%garbage"}).status_code == 200


def test_the_rows_fragment_stops_polling_once_every_shown_run_ended(viewer, demos):
    finished_order()
    response = viewer.get(reverse("monitoring:run_list"), {"fragment": "rows"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 286
    start_run("order_fulfilment", {**ORDER, "order_id": "live"})
    response = viewer.get(reverse("monitoring:run_list"), {"fragment": "rows"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200


# --- run detail --------------------------------------------------------------------------------------------


def test_the_run_page_shows_graph_attempts_effects_and_history(viewer, demos):
    run = finished_order()
    text = viewer.get(reverse("monitoring:run_detail", args=[run.pk])).content.decode()
    for part in ("<svg", "charge", "Effects", "History", "Run succeeded"):
        assert part in text, part
    assert "Cancel run" not in text and "Redrive" not in text


def test_the_live_fragment_stops_polling_when_the_run_ended(viewer, demos):
    run = finished_order()
    url = reverse("monitoring:run_detail", args=[run.pk])
    assert viewer.get(url, {"fragment": "live"}, HTTP_HX_REQUEST="true").status_code == 286
    live, _ = start_run("order_fulfilment", {**ORDER, "order_id": "live"})
    url = reverse("monitoring:run_detail", args=[live.pk])
    assert viewer.get(url, {"fragment": "live"}, HTTP_HX_REQUEST="true").status_code == 200


def test_a_long_history_is_loaded_a_page_at_a_time(viewer, demos, monkeypatch):
    from monitoring.views import runs as run_views

    monkeypatch.setattr(run_views, "EVENTS_PAGE", 5)
    run = finished_order()
    total = Event.objects.filter(run=run).count()
    assert total > 10
    text = viewer.get(reverse("monitoring:run_detail", args=[run.pk])).content.decode()
    assert text.count('<tr id="event-') == 5 and "Load more events" in text
    first = Event.objects.filter(run=run).order_by("id")[4].pk
    more = viewer.get(reverse("monitoring:run_events", args=[run.pk]), {"after": first}).content.decode()
    assert more.count('<tr id="event-') == 5


def test_the_run_page_costs_a_fixed_number_of_queries(viewer, demos):
    small, big = finished_order(), drain(start_run("research", {"question": "Do you ship express to Austria?"})[0])
    counts = []
    for run in (small, big):
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(reverse("monitoring:run_detail", args=[run.pk])).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 20, counts


def test_an_unknown_run_is_a_404(viewer):
    assert viewer.get(reverse("monitoring:run_detail", args=[uuid.uuid4()])).status_code == 404


# --- actions ---------------------------------------------------------------------------------------------------


def test_a_viewer_may_not_cancel_or_redrive(viewer, demos):
    run, _ = start_run("order_fulfilment", ORDER)
    assert viewer.post(reverse("monitoring:cancel_run", args=[run.pk])).status_code == 403
    assert viewer.post(reverse("monitoring:redrive_run", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_an_operator_cancels_from_the_run_page_and_the_history_names_them(operator, demos):
    run, _ = start_run("order_fulfilment", ORDER)
    response = operator.post(reverse("monitoring:cancel_run", args=[run.pk]), {"reason": "wrong address"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.error["message"] == "wrong address"
    assert Event.objects.get(run=run, kind=EventKind.RUN_CANCELLED).actor.username == "otto"


def test_cancelling_a_finished_run_is_refused_with_a_message(operator, demos):
    run = finished_order()
    response = operator.post(reverse("monitoring:cancel_run", args=[run.pk]), follow=True)
    assert "Refused: a succeeded run cannot be cancelled" in response.content.decode()


def test_actions_need_post(operator, demos):
    run, _ = start_run("order_fulfilment", ORDER)
    assert operator.get(reverse("monitoring:cancel_run", args=[run.pk])).status_code == 405


def test_the_timeline_draws_each_attempt_in_its_lane_linked_to_its_row(viewer, demos):
    import xml.etree.ElementTree as ElementTree

    run = drain(start_run("research", {"question": "Do you ship express to Austria?"})[0])
    text = viewer.get(reverse("monitoring:run_detail", args=[run.pk])).content.decode()
    svg = text[text.index('<svg class="timeline"'):text.index("</svg>", text.index('<svg class="timeline"')) + 6]
    tree = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = tree.findall(f".//{ns}a")
    assert len(bars) == run.attempts.count()
    assert {bar.get("href") for bar in bars} == {f"#attempt-{pk}" for pk in run.attempts.values_list("pk", flat=True)}
    lanes = [label.text for label in tree.findall(f"{ns}text") if label.get("text-anchor") == "end"]
    assert "main line" in lanes and any(lane.endswith("/handbook") for lane in lanes)
    assert all("succeeded" in bar.find(f"{ns}title").text for bar in bars)
    assert "3/3 done (joined)" in text  # the fork's count on the graph
