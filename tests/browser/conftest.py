"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright cannot download its own browsers here, so the system's Chromium is launched
(installed by .ci/run: apt chromium). Playwright's sync API runs an event loop in the test
thread, so Django's async-safety check must be told the ORM calls are safe.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: apt install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def screenshots() -> Path:
    """Where browser tests keep their screenshots (test artifacts)."""
    from django.conf import settings

    path = Path(settings.VAR_DIR) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def signed_in(page, django_user_model):
    """The page, signed in as a superuser named ops."""
    django_user_model.objects.create_superuser("ops", password="s3cret-enough", email="")
    page.goto("/accounts/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "s3cret-enough")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return page
