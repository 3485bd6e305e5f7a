"""Stored XSS in Chromium: every page showing the payloads (tests/security/xss_data.py) renders
them as text. The browser runs with the content security policy bypassed, so what is checked
is the escaping itself (the policy is a second wall, tested in test_csp.py): no dialog opens,
and no element the payload would create exists, after htmx has swapped in its fragments too."""

from __future__ import annotations

import pytest

from ..security.xss_data import DRAFT, PAYLOAD, build, pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INJECTED = """() => {
  const found = [];
  document.querySelectorAll("img[src='x'], svg[onload], script:not([src]):not([type='application/json'])")
    .forEach((el) => found.push(el.outerHTML.slice(0, 120)));
  document.querySelectorAll("*").forEach((el) => {
    for (const attr of el.attributes) {
      if (attr.name.startsWith("on")) { found.push(`${el.tagName} ${attr.name}`); }
    }
  });
  return found;
}"""


@pytest.fixture
def unprotected(browser, live_server, django_user_model):
    """A signed-in superuser's page in a browser that ignores the content security policy."""
    django_user_model.objects.create_superuser("ops", password="s3cret-enough", email="")
    context = browser.new_context(base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/accounts/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "s3cret-enough")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    yield page
    context.close()


def test_no_stored_payload_runs_in_chromium(unprotected, redis_conn, sink_path, fast_engine, django_user_model):
    page = unprotected
    reviewer = django_user_model.objects.create_user("rita", password="pw")
    probe = build(django_user_model.objects.get(username="ops"), reviewer)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    # The watch works: the same payload, unescaped, opens dialogs and leaves its elements behind.
    page.set_content(f"<p>{PAYLOAD}</p>")
    page.wait_for_function("() => document.querySelector('img[src=x]') !== null")
    page.wait_for_timeout(300)
    assert dialogs and page.evaluate(INJECTED)
    dialogs.clear()

    shown = 0
    for url in pages(probe):
        page.goto(url)
        try:
            page.wait_for_load_state("networkidle", timeout=3_000)
        except Exception:  # a page that polls: its first polls have come back
            page.wait_for_timeout(500)
        assert page.evaluate(INJECTED) == [], url
        assert dialogs == [], f"{url} opened {dialogs}"
        shown += PAYLOAD in page.locator("body").inner_text()

    # The payload is on the pages as text, so the checks above looked at it.
    assert shown >= 5
    # htmx swaps: a state's panel in the designer, and the run page's history filtered by a state.
    page.goto(f"/designer/{DRAFT}/")
    page.locator("svg.workflow-graph a[hx-get*='state=first']").click()
    page.wait_for_url("**/?state=first")
    page.locator("#panel h2").wait_for()
    page.goto(f"/runs/{probe.finished.pk}/")
    page.locator("svg.workflow-graph a[hx-get*='state=explode']").click()
    page.wait_for_url("**/?state=explode")
    page.locator(".selection").wait_for()
    assert page.evaluate(INJECTED) == [] and dialogs == []
