"""The KPI dashboard in Chromium: choosing another window swaps the figures in place (htmx),
the address keeps the window, and the filters form keeps it too. Screenshots are kept under
var/screenshots/ as test artifacts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.engine.workflows import publish
from orchestrator.models import FailureMode, Run, RunStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def runs():
    """In the last hour one success; earlier in the day one failure and one more success."""
    version, _ = publish({"name": "kpi_demo", "start_at": "a", "states": {"a": {"type": "succeed"}}})
    now = timezone.now()
    for ago, took, status in ((10, 2, RunStatus.SUCCEEDED), (180, 5, RunStatus.FAILED),
                              (300, 1, RunStatus.SUCCEEDED)):
        finished = now - timedelta(minutes=ago)
        run = Run.objects.create(
            workflow=version.workflow, version=version, status=status, finished_at=finished,
            failure_mode=FailureMode.HANDLER_ERROR if status == RunStatus.FAILED else "",
        )
        Run.objects.filter(pk=run.pk).update(created_at=finished - timedelta(minutes=took))


def tile_value(page, key: str) -> str:
    return page.locator(f"#tile-{key} .value").inner_text()


def test_changing_the_window_updates_the_tiles_and_the_address(signed_in, runs, screenshots):
    page = signed_in
    page.click("nav >> text=Dashboards")
    page.wait_for_url("**/dashboards/kpis/")
    assert tile_value(page, "finished") == "3"
    assert tile_value(page, "completion_rate") == "66.7 %"
    assert page.locator(".chart-card svg").count() == 6
    page.screenshot(path=str(screenshots / "kpi-dashboard-day.png"), full_page=True)

    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.click(".window-choice >> text=Last hour")
    page.wait_for_url("**/dashboards/kpis/?window=hour")
    page.wait_for_function("() => document.querySelector('#tile-finished .value').textContent.trim() === '1'")
    assert page.evaluate("window.__sameDocument") is True  # swapped in place by htmx
    assert tile_value(page, "completion_rate") == "100.0 %"
    assert "up 50.0 %" not in page.locator("#tile-completion_rate").inner_text()  # nothing in the hour before
    assert page.locator(".window-choice a[aria-current=true]").inner_text() == "Last hour"
    assert page.locator("select[name=window]").input_value() == "hour"
    page.screenshot(path=str(screenshots / "kpi-dashboard-hour.png"), full_page=True)

    # The form keeps the window when a workflow is chosen, and the data table opens.
    page.select_option("select[name=workflow]", "kpi_demo")
    page.click("button:has-text('Show')")
    page.wait_for_url("**window=hour**workflow=kpi_demo**")
    assert tile_value(page, "finished") == "1"
    page.click("summary:has-text('Data table: task completion rate')")
    assert page.locator("#chart-completion-rate table").is_visible()

    # A bad custom window is refused with a message, not an error page.
    page.goto("/dashboards/kpis/?window=custom&start=tomorrow")
    assert "start must be a date or date-time" in page.locator("[role=alert]").inner_text()
