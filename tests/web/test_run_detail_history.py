"""The run page's history, tracebacks, linked selection and time zone: filters in the query
string (page, htmx fragment, load-more link), the failed attempt's traceback stored by the
engine and shown escaped, ``?state=`` selecting a state across graph, timeline, attempts and
history, and times in the zone the ``ratchet_tz`` cookie names."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitoring.run_page import FILTER_BOXES
from monitoring.timezones import zone_named
from orchestrator.engine import history
from orchestrator.engine.runs import redrive_run, start_run
from orchestrator.models import Event, EventKind, Run, RunStatus

from ..engine.test_transitions import drain
from ..workflows import chain, task

pytestmark = pytest.mark.django_db(transaction=True)

# Handler output is user text: the message must come back escaped wherever it is shown.
NASTY = "<script>alert('x')</script> & bad"
STEP_KINDS = {str(kind) for kind in history.EVENT_GROUPS["steps"][1]}


def failing_run(user=None) -> Run:
    """prepare succeeds; explode raises twice (one retry), fails the run; an operator redrives
    it once (an event with an actor), and it fails again."""
    chain("flaky_pipeline", ("prepare", task("demo.noop")),
          ("explode", task("demo.always_fails", args={"message": NASTY},
                           retry=[{"max_attempts": 2, "interval_seconds": 0}])))
    run = drain(start_run("flaky_pipeline", {})[0])
    assert run.status == RunStatus.FAILED
    if user is not None:
        redrive_run(run.pk, user=user)
        run = drain(run)
        assert run.status == RunStatus.FAILED
    return run


@pytest.fixture
def failed(demos, django_user_model):
    return failing_run(django_user_model.objects.create_user("otto-the-operator"))


def page(client, run: Run, query: dict | None = None, **headers) -> tuple[int, str]:
    response = client.get(reverse("monitoring:run_detail", args=[run.pk]), query or {}, **headers)
    return response.status_code, response.content.decode()


def rows(text: str) -> list[tuple[str, str]]:
    """(kind, state) of each history row shown."""
    return re.findall(r'<tr id="event-\d+" data-kind="([a-z_]+)" data-state="([^"]*)"', text)


# --- filters -------------------------------------------------------------------------------------------


def test_every_event_kind_is_in_exactly_one_group():
    grouped = [str(kind) for _, kinds in history.EVENT_GROUPS.values() for kind in kinds]
    assert sorted(grouped) == sorted(EventKind.values)


def test_the_history_filters_by_kind_group(viewer, failed):
    _, everything = page(viewer, failed)
    assert {kind for kind, _ in rows(everything)} - STEP_KINDS  # there is more than steps to filter out
    status, text = page(viewer, failed, {"kind": "steps"})
    shown = rows(text)
    assert status == 200 and shown and {kind for kind, _ in shown} <= STEP_KINDS
    assert len(shown) == Event.objects.filter(run=failed, kind__in=STEP_KINDS).count()
    assert 'id="kind-steps" checked' in text and 'id="kind-effects" checked' not in text
    _, both = page(viewer, failed, {"kind": ["steps", "run"]})
    kinds = {kind for kind, _ in rows(both)}
    assert "run_failed" in kinds and "step_failed" in kinds and kinds <= STEP_KINDS | {"run_started", "run_failed"}


def test_the_history_filters_by_state(viewer, failed):
    status, text = page(viewer, failed, {"state": "prepare"})
    shown = rows(text)
    assert status == 200 and shown and {state for _, state in shown} == {"prepare"}
    assert len(shown) == Event.objects.filter(run=failed, state_name="prepare").count()
    assert '<option selected>prepare</option>' in text


def test_only_operator_actions_keeps_the_events_with_an_actor_and_names_them(viewer, failed):
    status, text = page(viewer, failed, {"operator": "1"})
    # the redrive, and the step it scheduled on the operator's behalf
    assert status == 200 and [kind for kind, _ in rows(text)] == ["run_redriven", "step_scheduled"]
    assert text.count('<span class="who">otto-the-operator</span>') == 2
    _, everything = page(viewer, failed)
    history_part = everything[everything.index('<div id="history">'):]
    assert len(rows(everything)) > 2 and history_part.count('<span class="who">') == 2  # none on the engine's own


def test_a_filter_matching_nothing_says_so_and_offers_to_clear_it(viewer, failed):
    _, text = page(viewer, failed, {"kind": "approvals"})
    assert rows(text) == [] and "No event matches these filters." in text


def test_filters_apply_to_the_history_fragment_and_its_load_more_link(viewer, failed, monkeypatch):
    from monitoring.views import runs as run_views

    monkeypatch.setattr(run_views, "EVENTS_PAGE", 3)
    steps = list(Event.objects.filter(run=failed, kind__in=STEP_KINDS).order_by("id").values_list("pk", flat=True))
    assert len(steps) > 6
    status, text = page(viewer, failed, {"kind": "steps"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="history")
    assert status == 200 and text.lstrip().startswith('<div id="history">') and "<html" not in text
    assert [int(pk) for pk in re.findall(r'<tr id="event-(\d+)"', text)] == steps[:3]
    more = unescape(re.search(r'<tr class="more">.*?hx-get="([^"]+)"', text, re.S).group(1))
    assert more == reverse("monitoring:run_events", args=[failed.pk]) + f"?kind=steps&after={steps[2]}"
    following = viewer.get(more).content.decode()
    assert [int(pk) for pk in re.findall(r'<tr id="event-(\d+)"', following)] == steps[3:6]
    assert {kind for kind, _ in rows(following)} <= STEP_KINDS


def test_the_filter_form_swaps_the_history_and_pushes_the_address(viewer, failed):
    _, text = page(viewer, failed)
    form = re.search(r'<form id="history-filter"[^>]*>', text).group(0)
    url = reverse("monitoring:run_detail", args=[failed.pk])
    for attribute in (f'action="{url}"', f'hx-get="{url}"', 'hx-target="#history"', 'hx-push-url="true"'):
        assert attribute in form, attribute


@pytest.mark.parametrize(("query", "says"), [
    ({"kind": "gremlins"}, "unknown event kind &#x27;gremlins&#x27;"),
    ({"state": "<b>nowhere</b>"}, "unknown state &#x27;&lt;b&gt;nowhere&lt;/b&gt;&#x27;"),
    ({"operator": "maybe"}, "operator must be 1 or 0"),
])
def test_a_bad_filter_gets_a_clear_message_not_a_500(viewer, failed, query, says):
    status, text = page(viewer, failed, query)
    assert status == 400 and says in text and rows(text)  # the rest of the page is still there
    status, text = page(viewer, failed, query, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="history")
    assert status == 200 and says in text  # htmx swaps only 2xx: the message must get through
    response = viewer.get(reverse("monitoring:run_events", args=[failed.pk]), {**query, "after": "1"})
    assert response.status_code == 400 and says in response.content.decode()


# --- tracebacks -----------------------------------------------------------------------------------------


def test_the_engine_keeps_the_traceback_of_a_handler_that_raised(demos):
    run = failing_run()
    attempt = run.failed_attempt
    trace = attempt.error["traceback"]
    assert trace.startswith("Traceback") and "in always_fails" in trace and f"RuntimeError: {NASTY}" in trace
    assert len(trace) <= 4000
    assert run.attempts.get(state_name="prepare").error is None  # a successful step stores nothing


def test_the_traceback_is_shown_escaped_and_collapsed_under_its_attempt(viewer, failed):
    _, text = page(viewer, failed)
    failed_attempts = failed.attempts.filter(state_name="explode").order_by("id")
    assert failed_attempts.count() == 3
    for attempt in failed_attempts:
        row = text.index(f'<tr id="attempt-{attempt.pk}"')
        details = text.index(f'<details class="traceback" id="traceback-{attempt.pk}">')
        assert row < details < text.index("<tr id=", row + 1)  # right under its own row
        block = text[details:text.index("</details>", details)]
        assert '<pre class="copyable">' in block and "in always_fails" in block
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; bad" in block
    assert "<script>alert" not in text
    assert 'id="traceback-' not in text[:text.index('<table class="attempts"')]  # only in the attempts table
    prepare = failed.attempts.get(state_name="prepare")
    assert f'id="traceback-{prepare.pk}"' not in text


# --- linked selection ---------------------------------------------------------------------------------


def test_selecting_a_state_narrows_the_history_and_highlights_it_everywhere(viewer, failed):
    status, text = page(viewer, failed, {"state": "explode"})
    assert status == 200
    assert rows(text) and {state for _, state in rows(text)} == {"explode"}
    explode = set(failed.attempts.filter(state_name="explode").values_list("pk", flat=True))
    highlighted = {int(pk) for pk in re.findall(r'<tr id="attempt-(\d+)" class="[^"]*selected-state', text)}
    assert highlighted == explode
    bars = re.findall(r'<a href="#attempt-(\d+)" class="bar ([a-z]+)" data-state="([a-z]+)"', text)
    assert {(state, look) for _, look, state in bars} == {("explode", "selected"), ("prepare", "faded")}
    graph = text[text.index('<svg class="workflow-graph"'):text.index("</svg>", text.index("workflow-graph"))]
    selected_nodes = re.findall(r'<g id="[^"]*" class="node state [^"]*selected[^"]*">\s*<title>([^<]*)</title>', graph)
    assert len(selected_nodes) == 1 and "explode" in selected_nodes[0]
    assert "Selected state <strong>explode</strong>" in text
    clear = reverse("monitoring:run_detail", args=[failed.pk])
    assert f'<a href="{clear}" hx-get="{clear}" hx-include="{FILTER_BOXES}" hx-target="#run-live"' in text


def test_without_a_selection_nothing_is_highlighted(viewer, failed):
    _, text = page(viewer, failed)
    assert "selected-state" not in text and "Clear selection" not in text
    assert 'class="bar faded"' not in text and 'class="bar selected"' not in text


def test_graph_timeline_and_attempts_link_to_the_selection_through_htmx(viewer, failed):
    url = reverse("monitoring:run_detail", args=[failed.pk])
    _, text = page(viewer, failed, {"kind": "steps"})
    graph = text[text.index('<svg class="workflow-graph"'):text.index("</svg>", text.index("workflow-graph"))]
    found = re.findall(r'<a xlink:href="([^"]*)" hx-get="([^"]*)"', graph)
    links = {unescape(href): unescape(get) for href, get in found}
    # without JS the href (filters kept); with htmx the state, plus the filter boxes as they are now
    assert links == {f"{url}?kind=steps&state=prepare": f"{url}?state=prepare",
                     f"{url}?kind=steps&state=explode": f"{url}?state=explode"}
    bar_links = set(re.findall(r'class="bar" data-state="[a-z]+" hx-get="([^"]*)"', text))
    assert {unescape(link) for link in bar_links} == {f"{url}?state=prepare", f"{url}?state=explode"}
    assert f'<a href="{url}?kind=steps&amp;state=explode" hx-get="{url}?state=explode"' in text  # an attempt's state
    for holder in ('<div class="svg"', '<div class="timeline-wrap"', '<table class="attempts"'):
        start = text.index(holder)
        opening = text[start:text.index(">", start)]
        assert 'hx-target="#run-live" hx-swap="outerHTML" hx-push-url="true"' in opening, holder
        assert f'hx-include="{FILTER_BOXES}"' in opening, holder
    assert '<form id="history-filter"' in text and 'type="checkbox" name="kind"' in text  # what FILTER_BOXES finds
    _, selected = page(viewer, failed, {"state": "explode"})
    graph = selected[selected.index('<svg class="workflow-graph"'):]
    assert f'<a xlink:href="{url}" hx-get="{url}"' in graph  # the selected state's node clears the selection


def test_htmx_gets_the_live_part_for_a_selection_and_the_history_for_a_filter(viewer, failed):
    status, text = page(viewer, failed, {"state": "prepare"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-live")
    assert status == 200  # a selection of a finished run is not a poll: no 286
    assert text.lstrip().startswith('<div id="run-live">') and "<html" not in text
    assert 'class="bar selected" data-state="prepare"' in text and {s for _, s in rows(text)} == {"prepare"}
    response = viewer.get(reverse("monitoring:run_detail", args=[failed.pk]), {"state": "prepare"})
    assert "HX-Request" in response["Vary"] and "HX-Target" in response["Vary"]


def test_the_poll_of_a_live_run_keeps_its_filters_and_stops_with_the_run(viewer, demos):
    live, _ = start_run("order_fulfilment", {"order_id": "L-1", "customer": "a@b.c", "items": []})
    _, text = page(viewer, live, {"kind": "steps"})
    poll = re.search(r'<div hidden id="run-poll" hx-get="([^"]+)" hx-trigger="every 2s" hx-target="#run-live"', text)
    assert unescape(poll.group(1)) == reverse("monitoring:run_detail", args=[live.pk]) + "?kind=steps&fragment=live"
    status, text = page(viewer, live, {"kind": "steps", "fragment": "live"}, HTTP_HX_REQUEST="true")
    assert status == 200 and 'id="kind-steps" checked' in text and 'id="run-poll"' in text
    finished = drain(live)
    status, text = page(viewer, finished, {"kind": "steps", "fragment": "live"}, HTTP_HX_REQUEST="true")
    assert status == 286 and 'id="run-poll"' not in text


def test_filters_and_selection_cost_no_extra_query(viewer, failed):
    counts = []
    for query in ({}, {"kind": ["steps", "effects"], "operator": "1"}, {"state": "explode"}):
        with CaptureQueriesContext(connection) as queries:
            page(viewer, failed, query)
        counts.append(len(queries))
    assert counts[0] == counts[1] == counts[2], counts


# --- time zone ----------------------------------------------------------------------------------------------


def test_times_are_shown_in_the_zone_the_cookie_names(viewer, failed):
    event = Event.objects.filter(run=failed).order_by("id").first()
    viewer.cookies["ratchet_tz"] = "Asia/Kolkata"
    _, text = page(viewer, failed)
    assert "Times in <span class=\"zone\">Asia/Kolkata (IST)</span>" in text
    local = (event.created_at + timedelta(hours=5, minutes=30)).strftime("%H:%M:%S")
    assert f'<time datetime="{event.created_at.strftime("%Y-%m-%dT%H:%M:%S")}' in text  # the machine value stays UTC
    row = text[text.index(f'<tr id="event-{event.pk}"'):]
    assert f">{local}." in row[:row.index("</tr>")]
    assert f"{event.created_at.strftime('%Y-%m-%d %H:%M:%S')}" in row[:row.index("</tr>")]  # UTC on hover
    assert " IST</time>" in text  # the run's start, in the page header


@pytest.mark.parametrize("cookie", ["Mars/Olympus_Mons", "../../etc/passwd", "America", "Europe/Paris\\x00", "x" * 500])
def test_a_bad_time_zone_cookie_is_ignored(viewer, failed, cookie):
    viewer.cookies["ratchet_tz"] = cookie
    status, text = page(viewer, failed)
    assert status == 200 and "Times in <span class=\"zone\">UTC (UTC)</span>" in text


def test_zone_names_are_checked_against_the_zone_database():
    assert str(zone_named("Europe/Paris")) == "Europe/Paris"
    assert str(zone_named("Europe%2FParis")) == "Europe/Paris"  # a cookie value some clients encode
    assert zone_named("Etc/GMT+3") is not None
    for bad in ("", "Nowhere/City", "/etc/localtime", "Europe/../../etc", "Europe/Paris; path=/"):
        assert zone_named(bad) is None, bad
