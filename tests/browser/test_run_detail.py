"""Triage of a failed run in Chromium: filter its history, click a state on the graph and see the
history narrow and the address change without a reload, open the failed attempt's traceback,
clear the selection, go back; and times shown in the browser's own time zone. Screenshots are
kept under var/screenshots/."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from orchestrator.models import Event
from orchestrator.roles import ensure_role_groups

from ..web.test_run_detail_history import NASTY, STEP_KINDS, failing_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shown_rows(page) -> list[tuple[str, str]]:
    return page.eval_on_selector_all(
        "#event-rows tr[id^=event-]", "rows => rows.map(r => [r.dataset.kind, r.dataset.state])")


def test_an_operator_triages_a_failed_run_from_its_page(signed_in, demo, redis_conn, sink_path, django_user_model,
                                                       screenshots):
    page = signed_in
    run = failing_run(django_user_model.objects.get(username="ops"))
    page.goto(f"/runs/{run.pk}/")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    assert {kind for kind, _ in shown_rows(page)} - STEP_KINDS

    page.check("#kind-steps")  # applies at once: htmx swaps the history and pushes the address
    page.wait_for_url("**/runs/*/?kind=steps")
    page.wait_for_function("() => document.querySelectorAll('#kind-steps:checked').length === 1")
    assert {kind for kind, _ in shown_rows(page)} <= STEP_KINDS

    page.click("svg.workflow-graph a[hx-get*='state=explode']")
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query) == {"kind": ["steps"], "state": ["explode"]})
    page.locator(".selection").wait_for()
    rows = shown_rows(page)
    assert rows and {state for _, state in rows} == {"explode"} and {kind for kind, _ in rows} <= STEP_KINDS
    assert len(rows) == Event.objects.filter(run=run, state_name="explode", kind__in=STEP_KINDS).count()
    # htmx settles: a swapped element with an id keeps its old attributes for a moment, so wait
    selected_node = page.locator("svg.workflow-graph g.selected")
    expect(selected_node).to_have_count(1)
    expect(selected_node).to_contain_text("explode")
    expect(page.locator("svg.timeline a.bar.selected")).to_have_count(3)  # two tries, and the redriven one
    expect(page.locator("table.attempts tr.selected-state[id^=attempt-]")).to_have_count(3)
    assert page.locator("#history-state-select").input_value() == "explode"

    details = page.locator(f"#traceback-{run.failed_attempt_id}")
    assert details.get_attribute("open") is None and not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert details.locator("pre").is_visible()
    text = details.locator("pre").inner_text()
    assert f"RuntimeError: {NASTY}" in text and "in always_fails" in text  # the user's text, shown as text
    assert details.locator("button.copy").is_visible()
    page.screenshot(path=str(screenshots / "run-detail-triage.png"), full_page=True)
    assert page.evaluate("window.__sameDocument") is True

    page.click("text=Clear selection")
    page.wait_for_url("**/runs/*/?kind=steps")
    page.locator(".selection").wait_for(state="detached")
    assert {state for _, state in shown_rows(page)} == {"prepare", "explode"}
    page.go_back()
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query) == {"kind": ["steps"], "state": ["explode"]})
    page.locator(".selection").wait_for()


def test_a_timeline_bar_selects_its_state(signed_in, demo, redis_conn, sink_path):
    page = signed_in
    run = failing_run()
    page.goto(f"/runs/{run.pk}/")
    page.click("svg.timeline a.bar[data-state=prepare]")
    page.wait_for_url("**/runs/*/?state=prepare")
    page.locator("svg.timeline a.bar.selected[data-state=prepare]").wait_for()
    assert {state for _, state in shown_rows(page)} == {"prepare"}
    page.select_option("#history-state-select", "explode")  # the history's own state picker selects too
    page.wait_for_url("**/runs/*/?state=explode")
    page.locator("svg.timeline a.bar.selected[data-state=explode]").first.wait_for()
    assert {state for _, state in shown_rows(page)} == {"explode"}
    expect(page.locator("svg.workflow-graph g.selected")).to_contain_text("explode")


def test_times_are_shown_in_the_browsers_time_zone(browser, live_server, django_user_model, demo, redis_conn,
                                                  sink_path):
    django_user_model.objects.create_user("tokyo", password="s3cret-enough").groups.add(
        ensure_role_groups()["viewer"])
    context = browser.new_context(base_url=live_server.url, timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/accounts/login/")
        assert "UTC (UTC)" in page.locator(".site-footer").inner_text()  # nothing told the server yet
        assert {c["name"]: c["value"] for c in context.cookies()}["ratchet_tz"] == "Asia/Tokyo"
        page.fill("#id_username", "tokyo")
        page.fill("#id_password", "s3cret-enough")
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        assert "Asia/Tokyo (JST)" in page.locator(".site-footer").inner_text()
        run = failing_run()
        page.goto(f"/runs/{run.pk}/")
        assert page.locator(".lead time").inner_text().endswith("JST")
    finally:
        context.close()
