"""A run with many attempts (a retry storm) keeps its page small and usable: the attempts table
shows a bounded set of rows (first tries, latest ones, the failed attempt, each state's first
try, the selected state's) with "gap" rows that load the rest a page at a time; repeated
tracebacks are shown once; the timeline draws a step's tries as one bar; and the page's query
count does not grow with the run. The runs are real (the engine, in-process); the bounds are
lowered so that a few dozen attempts stand for thousands, except in the test at real scale."""

from __future__ import annotations

import re
from html import unescape
from xml.etree import ElementTree

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitoring import attempt_rows, timeline
from orchestrator.engine import history
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import Run, RunStatus

from ..engine.test_transitions import drain
from .test_run_detail_history import NASTY, failing_run

pytestmark = pytest.mark.django_db(transaction=True)

SVG = "{http://www.w3.org/2000/svg}"
ROW = re.compile(r'<tr id="attempt-(\d+)"')
GAP = re.compile(r'<tr class="gap" id="attempts-gap-(\d+)"><td colspan="10">\s*'
                 r'<strong>(\d+) attempts? not shown</strong>')


def storm(name: str = "storm", states: int = 4, tries: int = 12, *, fail_at_end: bool = False) -> Run:
    """``states`` steps that always fail, each tried ``tries`` times, the failure caught to go on
    (with ``fail_at_end``, the last one's is not caught: the run fails)."""
    names = [f"step_{i}" for i in range(states)]
    doc: dict = {}
    for index, state in enumerate(names):
        after = names[index + 1] if index + 1 < states else "done"
        doc[state] = {"type": "task", "handler": "demo.always_fails", "args": {"message": NASTY}, "next": after,
                      "retry": [{"max_attempts": tries, "interval_seconds": 0}]}
        if not (fail_at_end and index + 1 == states):
            doc[state]["catch"] = [{"errors": ["*"], "next": after}]
    doc["done"] = {"type": "succeed"}
    publish({"name": name, "start_at": names[0], "states": doc})
    run = drain(start_run(name, {})[0], timeout=120)
    assert run.attempts.count() == states * tries
    return run


def lower_bounds(monkeypatch) -> None:
    """Bounds scaled down: above 20 attempts the table is bounded (first 5, latest 5, pages of 7)
    and the timeline draws a step's tries as one bar."""
    for name, value in (("BOUNDED_ABOVE", 20), ("HEAD", 5), ("TAIL", 5), ("PAGE", 7), ("SELECTED_EACH_END", 3)):
        monkeypatch.setattr(attempt_rows, name, value)
    monkeypatch.setattr(timeline, "AGGREGATE_ABOVE", 20)


@pytest.fixture
def small_bounds(monkeypatch):
    lower_bounds(monkeypatch)


def page(client, run: Run, query: dict | None = None, **headers) -> str:
    response = client.get(reverse("monitoring:run_detail", args=[run.pk]), query or {}, **headers)
    assert response.status_code == 200
    return response.content.decode()


def shown(text: str) -> list[int]:
    return [int(pk) for pk in ROW.findall(text)]


def gaps(text: str) -> list[tuple[int, int]]:
    """(first attempt id, count) of each gap row."""
    return [(int(first), int(count)) for first, count in GAP.findall(text)]


def attempt_ids(run: Run) -> list[int]:
    return list(run.attempts.order_by("id").values_list("pk", flat=True))


def svg_of(text: str) -> ElementTree.Element:
    start = text.index('<svg class="timeline"')
    return ElementTree.fromstring(text[start:text.index("</svg>", start) + 6])


# --- the attempts table ----------------------------------------------------------------------------


def test_a_long_runs_table_shows_first_latest_and_each_states_first_try_and_counts_the_rest(viewer, demos,
                                                                                           small_bounds):
    run = storm()
    ids = attempt_ids(run)
    text = page(viewer, run)
    firsts = [run.attempts.filter(state_name=f"step_{i}").order_by("id")[0].pk for i in range(4)]
    assert shown(text) == sorted({*ids[:5], *ids[-5:], *firsts})
    assert sum(count for _, count in gaps(text)) == len(ids) - len(shown(text))
    for first, count in gaps(text):  # each gap stands for the attempts between two rows shown
        position = ids.index(first)
        assert ids[position - 1] in shown(text) and ids[position + count] in shown(text)
    assert f"{len(ids)} attempts; {len(ids) - len(shown(text))} not shown." in text
    assert "7 attempts not shown</strong> <span class=\"muted\">(#" in text  # step_0's tries 6 to 12
    assert "step_0; 7 failed)" in text


def test_load_more_attempts_fills_a_gap_a_page_at_a_time_until_every_attempt_is_shown(viewer, demos, small_bounds):
    run = storm(states=2, tries=15)
    ids = attempt_ids(run)
    text = page(viewer, run)
    links = re.findall(r'<a class="load-attempts" href="[^"]+" hx-get="([^"]+)" hx-target="closest tr" '
                       r'hx-swap="outerHTML" hx-push-url="false">Load more attempts</a>', text)
    assert len(links) == len(gaps(text)) == 2  # each gap row loads in its place, keeping the address
    seen, pages = set(shown(text)), 0
    todo = [unescape(link) for link in links]
    while todo:
        rows = viewer.get(todo.pop(), HTTP_HX_REQUEST="true").content.decode()
        assert "<html" not in rows and rows.lstrip().startswith('<tr id="attempt-')
        new = shown(rows)
        start = ids.index(new[0])
        assert 0 < len(new) <= 7 and new == ids[start:start + len(new)] and not seen & set(new)
        seen |= set(new)
        pages += 1
        following = re.findall(r'class="load-attempts" href="[^"]+" hx-get="([^"]+)"', rows)
        if following:  # the rest of the gap, starting right after the page just loaded
            assert len(new) == 7 and gaps(rows)[0][0] == ids[start + 7]
        todo += [unescape(link) for link in following]
    assert pages == 4 and seen == set(ids)  # step_0: 10 hidden (7 + 3), step_1: 9 hidden (7 + 2)


def test_without_javascript_the_load_more_link_is_the_whole_page_with_those_attempts(viewer, demos, small_bounds):
    run = storm(states=2, tries=15)
    ids = attempt_ids(run)
    text = page(viewer, run)
    href = unescape(re.search(r'class="load-attempts" href="([^"]+)"', text).group(1))
    first, count = gaps(text)[0]
    assert href.endswith(f"#attempt-{first}")
    whole = viewer.get(href.split("#")[0]).content.decode()
    assert "<html" in whole
    start = ids.index(first)
    assert set(ids[start:start + 7]) <= set(shown(whole))
    assert len(shown(whole)) == len(shown(text)) + 7


@pytest.mark.parametrize("query", [{}, {"attempts_from": "9", "attempts_to": "3"},
                                   {"attempts_from": "x", "attempts_to": "3"}])
def test_a_page_of_attempts_needs_a_range_of_ids(viewer, demos, query):
    run = failing_run()
    url = reverse("monitoring:run_detail", args=[run.pk])
    response = viewer.get(url, {**query, "fragment": "attempts"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"attempts_from and attempts_to" in response.content
    assert viewer.get(url, {**query, "fragment": "attempts"}).status_code == 200  # without htmx: the page


def test_a_selected_states_first_and_latest_tries_are_shown_and_its_gaps_load_with_the_selection(viewer, demos,
                                                                                                 small_bounds):
    run = storm()
    middle = list(run.attempts.filter(state_name="step_2").order_by("id").values_list("pk", flat=True))
    text = page(viewer, run, {"state": "step_2"})
    highlighted = [int(pk) for pk in re.findall(r'<tr id="attempt-(\d+)" class="[^"]*selected-state', text)]
    assert highlighted == [*middle[:3], *middle[-3:]]
    assert "and the first and latest tries of <strong>step_2</strong>" in text
    hidden_first = middle[3]
    get = re.search(rf'<tr class="gap" id="attempts-gap-{hidden_first}">.*?hx-get="([^"]+)"', text, re.S).group(1)
    assert "state=step_2" in unescape(get)
    rows = viewer.get(unescape(get), HTTP_HX_REQUEST="true").content.decode()
    assert [int(pk) for pk in re.findall(r'<tr id="attempt-(\d+)" class="[^"]*selected-state', rows)] == \
        middle[3:3 + len(shown(rows))]


def test_the_attempt_that_failed_the_run_is_always_shown_with_its_traceback(viewer, demos, small_bounds):
    run = storm(fail_at_end=True)
    assert run.status == RunStatus.FAILED
    text = page(viewer, run)
    assert run.failed_attempt_id in shown(text)
    assert f'<details class="traceback" id="traceback-{run.failed_attempt_id}">' in text
    entries = history.timeline(run, tracebacks=False)
    middle = entries[len(entries) // 2 + 1].id
    assert middle not in attempt_rows.shown_ids(entries)
    assert middle in attempt_rows.shown_ids(entries, failed=middle)  # wherever it is in the run


def test_repeated_tracebacks_are_shown_once_per_state_and_error_and_escaped(viewer, demos, small_bounds):
    run = storm()
    text = page(viewer, run)
    full = [int(pk) for pk in re.findall(r'<details class="traceback" id="traceback-(\d+)">', text)]
    firsts = [run.attempts.filter(state_name=f"step_{i}").order_by("id")[0].pk for i in range(4)]
    assert full == firsts  # one per state: each is the same error, raised at the same line
    same = [int(pk) for pk in re.findall(r'data-same-as="(\d+)"', text)]
    assert len(same) == len(shown(text)) - len(full) and set(same) <= set(full)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; bad" in text and "<script>alert" not in text
    # a page of a gap refers to the traceback already on the page instead of repeating it
    get = unescape(re.search(r'class="load-attempts" href="[^"]+" hx-get="([^"]+)"', text).group(1))
    rows = viewer.get(get, HTTP_HX_REQUEST="true").content.decode()
    assert '<details class="traceback"' not in rows and set(re.findall(r'data-same-as="(\d+)"', rows)) == {
        str(firsts[0])}


def test_a_short_run_is_drawn_and_listed_in_full_as_before(viewer, demos, small_bounds):
    run = failing_run()
    text = page(viewer, run)
    assert shown(text) == attempt_ids(run) and not gaps(text) and "not shown" not in text
    assert text.count('<details class="traceback"') == 2 and "data-same-as" not in text
    bars = svg_of(text).findall(f".//{SVG}a")
    assert len(bars) == run.attempts.count() and not any(bar.get("data-tries") for bar in bars)


# --- the timeline --------------------------------------------------------------------------------------


def test_the_timeline_of_a_long_run_draws_each_steps_tries_as_one_labelled_bar(viewer, demos, small_bounds):
    run = storm()
    text = page(viewer, run)
    svg = svg_of(text)
    bars = svg.findall(f".//{SVG}a")
    assert len(bars) == 4 and [bar.get("data-tries") for bar in bars] == ["12"] * 4
    on_page = set(shown(text))
    for index, bar in enumerate(bars):
        tries = list(run.attempts.filter(state_name=f"step_{index}").order_by("id").values_list("pk", flat=True))
        assert bar.get("href") == f"#attempt-{tries[0]}" and tries[0] in on_page  # the first try's row is there
        title = bar.find(f"{SVG}title").text
        assert title.startswith(f"step_{index} (attempts {tries[0]} to {tries[-1]}): 12 tries, 12 failed")
        assert f"last error RuntimeError: {NASTY}" in title
    assert "12 tries" in [label.text for label in svg.iter(f"{SVG}text")]
    assert "the tries of each step drawn as one bar (4 bars)" in svg.find(f"{SVG}title").text
    assert "a step&#x27;s retries drawn as one bar" in text  # the legend says it in words
    assert "<script>alert" not in text[text.index('<svg class="timeline"'):]


def test_an_aggregated_bar_still_selects_its_state(viewer, demos, small_bounds):
    run = storm()
    text = page(viewer, run, {"state": "step_1"})
    looks = re.findall(r'<a href="#attempt-\d+" class="bar ([a-z]+)" data-state="(step_\d)"', text)
    assert looks == [("faded", "step_0"), ("selected", "step_1"), ("faded", "step_2"), ("faded", "step_3")]


# --- cost and size ------------------------------------------------------------------------------------------


def test_a_long_run_costs_the_same_queries_as_a_short_one(viewer, demos, small_bounds):
    short, long = failing_run(), storm()
    counts = []
    for run in (short, long):
        with CaptureQueriesContext(connection) as queries:
            page(viewer, run)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_at_real_scale_the_page_stays_small(viewer, demos):
    run = storm(states=4, tries=80)  # 320 attempts: above both real thresholds
    text = page(viewer, run)
    assert len(svg_of(text).findall(f".//{SVG}a")) == 4
    rows = shown(text)
    assert attempt_rows.HEAD + attempt_rows.TAIL <= len(rows) <= attempt_rows.HEAD + attempt_rows.TAIL + 4
    assert text.count('<details class="traceback"') == 4
    assert len(text.encode()) < 200_000, len(text.encode())
