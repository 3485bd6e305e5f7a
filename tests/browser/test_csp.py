"""The content security policy in Chromium: every main page, the run and workflow graphs, the
designer (and a panel htmx swaps in) and the API docs work under it with no violation: no
inline script, inline style, style attribute, eval or file from another origin anywhere.

Violations are caught twice: the browser's ``securitypolicyviolation`` events (recorded by a
script Playwright injects, which the policy does not apply to) and its console errors."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from orchestrator.engine.runs import start_run

from ..engine.test_transitions import drain
from ..workflows import ORDER

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile}:${event.lineNumber} ${event.sample}`);
});
"""

POLICY = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
          "connect-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'self'",
          "object-src 'none'"]


class PolicyWatch:
    """Every CSP violation and script error a page reports, from its console and its events."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))

    def _console(self, message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.console.append(f"{message.type}: {message.text}")

    def visit(self, path: str, ready: str = "main") -> None:
        response = self.page.goto(path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        header = response.headers.get("content-security-policy", "")
        for directive in POLICY:
            assert directive in header, f"{path}: no {directive!r} in its policy {header!r}"
        self.page.locator(ready).first.wait_for()
        self.settle()
        self.assert_clean(path)

    def settle(self) -> None:
        """Let htmx's load triggers (the approvals badge) and late resources happen."""
        try:
            self.page.wait_for_load_state("networkidle", timeout=3_000)
        except Exception:  # a page polling faster than the idle window: its first polls are in
            self.page.wait_for_timeout(500)

    def assert_clean(self, where: str) -> None:
        violations = self.page.evaluate("window.__cspViolations || []")
        assert not violations, f"{where}: content security policy violations: {violations}"
        assert not self.console, f"{where}: console errors: {self.console}"


def test_every_main_page_works_under_the_content_security_policy(signed_in, demo, redis_conn, sink_path):
    page = signed_in
    watch = PolicyWatch(page)
    succeeded = drain(start_run("order_fulfilment", ORDER)[0])
    failed = drain(start_run("order_fulfilment", {**ORDER, "items": []})[0])

    watch.visit("/", "main h1")
    watch.visit("/runs/", "#run-rows")
    for run in (succeeded, failed):
        watch.visit(f"/runs/{run.pk}/", "svg.workflow-graph")
    watch.visit("/workflows/")
    watch.visit("/workflows/order_fulfilment/", "svg.workflow-graph")
    watch.visit("/dashboards/kpis/")
    watch.visit("/failures/")
    watch.visit("/approvals/")
    watch.visit("/queues/")
    watch.visit("/flow/")
    watch.visit("/designer/")
    watch.visit("/designer/order_fulfilment/", "#editor svg.workflow-graph")
    watch.visit("/designer/order_fulfilment/versions/")
    watch.visit("/account/tokens/")
    watch.visit("/audit/")
    watch.visit("/runs/?status=failed", "#run-rows")

    # Content htmx swaps in is held to the same policy: a state's panel in the designer.
    watch.visit("/designer/order_fulfilment/", "#editor svg.workflow-graph")
    page.locator("svg.workflow-graph a[hx-get*='state=']").first.click()
    page.wait_for_url("**/designer/order_fulfilment/?state=*")
    expect(page.locator("#panel h2")).to_be_visible()
    watch.settle()
    watch.assert_clean("the designer's state panel")


def test_the_api_docs_page_works_under_the_content_security_policy(signed_in):
    watch = PolicyWatch(signed_in)
    watch.visit("/api/docs", "#swagger-ui .info")
    expect(signed_in.locator("#swagger-ui")).to_contain_text("Ratchet API")
    expect(signed_in.locator("#swagger-ui .opblock").first).to_be_visible()  # the endpoints, from /api/schema
    watch.assert_clean("/api/docs")
    # On a real host name Swagger UI would load a badge from validator.swagger.io: turned off.
    assert signed_in.evaluate("window.ui.getConfigs().validatorUrl") == "none"


def test_the_sign_in_page_works_under_the_content_security_policy(page):
    watch = PolicyWatch(page)
    watch.visit("/accounts/login/", "#id_username")
