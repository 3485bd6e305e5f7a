"""An operator, in Chromium against a live server and a real worker: filters the runs list,
saves the filter as a named view, cancels everything it matches after confirming the count,
and watches the bulk action's progress reach done without reloading."""

from __future__ import annotations

import pytest

from monitoring.models import BulkOperation, BulkStatus, SavedView
from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind, Run, RunStatus

from ..workflows import ORDER

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_operator_saves_a_view_and_cancels_everything_it_matches(signed_in, demo, workers, screenshots):
    page = signed_in
    live = [start_run("order_fulfilment", {**ORDER, "order_id": f"L-{i}"})[0] for i in range(3)]
    page.goto("/runs/")
    page.select_option("select[name=workflow]", "order_fulfilment")
    page.select_option("select[name=status]", "running")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**/runs/?*status=running*")
    assert page.locator("#matching-count").inner_text() == "3"

    page.fill(".save-view input[name=name]", "Live orders")
    page.click("button:has-text('Save view')")
    page.locator(".saved-view a:has-text('Live orders')").wait_for()
    assert SavedView.objects.get().query == "workflow=order_fulfilment&status=running"

    page.click("text=Cancel all matching…")
    page.wait_for_url("**/runs/bulk/?*action=cancel*")
    assert page.locator("#bulk-eligible").inner_text() == "3"
    page.fill("input[name=reason]", "duplicate orders")
    page.screenshot(path=str(screenshots / "bulk-confirm.png"), full_page=True)
    page.click("button:has-text('Cancel 3 runs')")
    page.wait_for_url("**/runs/bulk/*/")
    page.evaluate("window.__sameDocument = true")
    workers(1)  # the background work starts only now: the page must catch up by itself
    page.locator(".bulk-status:has-text('Done')").wait_for(timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#bulk-processed").inner_text() == "3"
    page.screenshot(path=str(screenshots / "bulk-done.png"), full_page=True)

    operation = BulkOperation.objects.get()
    assert operation.status == BulkStatus.DONE and operation.requested_by.username == "ops"
    for run in live:
        assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
        event = Event.objects.get(run=run, kind=EventKind.RUN_CANCELLED)
        assert event.actor.username == "ops" and "duplicate orders" in event.data["reason"]
