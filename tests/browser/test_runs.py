"""A user's first job, in Chromium against a live server and real workers: open a demo
workflow, start a run from its page, and watch the run page reach succeeded without
reloading; then an operator cancels a live run from its page. Screenshots are kept under
var/screenshots/ as test artifacts."""

from __future__ import annotations

import pytest

from orchestrator.models import EventKind, Run, RunStatus

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_user_starts_a_demo_run_and_watches_it_succeed_without_reloading(signed_in, demo, workers, screenshots):
    page = signed_in
    workers(1)
    page.click("nav >> text=Workflows")
    page.click("text=order_assistant")
    assert "A-1001" in page.locator("#run-input").input_value()  # prefilled with the sample input
    page.click("button:has-text('Start run')")
    page.wait_for_url("**/runs/**")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.locator(".summary .badge-succeeded").wait_for(timeout=45_000)
    assert page.evaluate("window.__sameDocument") is True
    assert "out for delivery" in page.locator(".summary").inner_text()
    assert "visited" in page.locator("svg.workflow-graph").text_content()  # the graph marks what ran, in words
    page.screenshot(path=str(screenshots / "run-succeeded.png"), full_page=True)
    run = Run.objects.get()
    assert run.status == RunStatus.SUCCEEDED and run.started_by.username == "ops"


def test_an_operator_cancels_a_live_run_from_its_page(signed_in, demo, screenshots):
    page = signed_in
    page.goto("/workflows/order_fulfilment/")
    page.click("button:has-text('Start run')")  # no worker runs: the run stays live
    page.wait_for_url("**/runs/**")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel run')")
    page.locator(".summary .badge-cancelled").wait_for()
    assert "Run cancelled." in page.locator(".messages").inner_text()
    page.screenshot(path=str(screenshots / "run-cancelled.png"), full_page=True)
    run = Run.objects.get()
    assert run.status == RunStatus.CANCELLED
    assert run.events.get(kind=EventKind.RUN_CANCELLED).actor.username == "ops"


def test_a_filtered_runs_list_keeps_its_filters_in_the_address(signed_in, demo):
    page = signed_in
    page.goto("/runs/")
    page.select_option("select[name=status]", "failed")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**/runs/?*status=failed*")
    assert "No run matches these filters." in page.locator("#run-rows").inner_text()
