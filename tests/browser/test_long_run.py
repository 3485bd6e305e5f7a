"""A retry storm in Chromium: the run page shows a bounded attempts table and a timeline with one
bar per retried step; "Load more attempts" fills a gap in place, without a reload or a new
address. The bounds are lowered so that 48 attempts stand for thousands. Screenshots (the page,
its timeline, its attempts) are kept under var/screenshots/."""

from __future__ import annotations

import pytest

from ..web.test_long_runs import lower_bounds, storm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = "table.attempts tr[id^=attempt-]"


def row_ids(page) -> list[int]:
    return page.eval_on_selector_all(ROWS, "rows => rows.map(r => Number(r.id.slice(8)))")


def test_an_operator_reads_a_retry_storm_and_loads_more_attempts(signed_in, demo, redis_conn, sink_path, monkeypatch,
                                                                screenshots):
    lower_bounds(monkeypatch)
    page = signed_in
    run = storm()
    ids = list(run.attempts.order_by("id").values_list("pk", flat=True))
    page.goto(f"/runs/{run.pk}/")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    address = page.url

    bars = page.locator("svg.timeline a.bar")
    assert bars.count() == 4 and page.locator("svg.timeline a.bar[data-tries='12']").count() == 4
    assert page.locator("svg.timeline text", has_text="12 tries").count() == 4
    before = row_ids(page)
    assert len(before) == 13 and before == sorted(before)  # first 5, latest 5, each other state's first try
    note = page.locator(".attempts-bound").inner_text()
    assert f"{len(ids)} attempts; {len(ids) - 13} not shown." in note
    gap = page.locator("table.attempts tr.gap").first
    assert "7 attempts not shown" in gap.inner_text() and "step_0" in gap.inner_text()

    gap.locator("a.load-attempts").click()
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 20")
    after = row_ids(page)
    assert after == sorted(after) and set(ids[:12]) <= set(after)  # step_0's twelve tries, in order
    assert page.locator("table.attempts tr.gap").count() == 3  # the other states' tries are still one row each
    assert page.url == address and page.evaluate("window.__sameDocument") is True
    same = page.locator(f"#attempt-{ids[8]} + tr .same-traceback a")
    assert same.get_attribute("href") == f"#traceback-{ids[0]}"  # the loaded rows point at the traceback shown
    page.locator("table.attempts tr.gap").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "run-detail-long-run.png"), full_page=True)
    page.locator("section[aria-label=Timeline]").screenshot(path=str(screenshots / "run-detail-long-run-timeline.png"))
    page.locator("section[aria-label=Attempts]").screenshot(path=str(screenshots / "run-detail-long-run-attempts.png"))
