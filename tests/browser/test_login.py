"""The sign-in page and the base layout, in Chromium: every page needs a login, a wrong
password says so and keeps the visitor on the form, the right one lands on the product."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", password="s3cret-enough", email="")


def test_a_visitor_is_sent_to_sign_in_and_a_wrong_password_is_refused(page, operator):
    page.goto("/")
    assert "/accounts/login/" in page.url
    assert page.title() == "Sign in · Ratchet"
    page.fill("#id_username", "ops")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text().startswith("Your username and password did not match")
    assert "/accounts/login/" in page.url
    assert page.locator(".topbar .who").count() == 0  # nobody is signed in


def test_signing_in_lands_on_the_page_asked_for(page, operator, demo):
    page.goto("/admin/orchestrator/workflow/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "s3cret-enough")
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/orchestrator/workflow/")
    assert page.locator("#result_list").inner_text().count("order_fulfilment") == 1
    assert "research" in page.locator("#result_list").inner_text()
