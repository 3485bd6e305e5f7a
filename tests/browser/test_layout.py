"""Every page at 1280x800 and on a phone-sized window: nothing wider than the window (wide
tables scroll inside their card), the navigation reachable by keyboard, and print without the
navigation, filters and buttons."""

from __future__ import annotations

import pytest

from orchestrator.engine.runs import start_run

from ..workflows import ORDER

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGES = ["/", "/workflows/", "/workflows/order_fulfilment/", "/runs/", "/runs/?status=running", "/failures/",
         "/dashboards/kpis/", "/queues/", "/flow/"]
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_no_page_is_wider_than_the_window(signed_in, demo, width, height):
    page = signed_in
    run, _ = start_run("order_fulfilment", ORDER)
    page.set_viewport_size({"width": width, "height": height})
    for url in [*PAGES, f"/runs/{run.pk}/"]:
        page.goto(url)
        assert page.evaluate(OVERFLOW) <= 1, f"{url} overflows a {width}px window"


def test_the_navigation_and_filters_are_reachable_by_keyboard(signed_in, demo):
    page = signed_in
    page.goto("/")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Runs":
            break
    else:
        pytest.fail("Tab never reached the Runs link")
    page.keyboard.press("Enter")
    page.wait_for_url("**/runs/")
    page.focus("select[name=status]")
    page.keyboard.press("Tab")  # on to the next filter, not trapped
    assert page.evaluate("document.activeElement.name") == "failure_mode"


def test_print_leaves_out_navigation_filters_and_buttons(signed_in, demo):
    page = signed_in
    page.goto("/runs/?status=running")
    page.emulate_media(media="print")
    for selector in (".topbar", "form.filters", ".run-tools"):
        assert not page.locator(selector).first.is_visible(), selector
    assert page.locator("h1").is_visible()
