"""The audit trail in Chromium: an admin narrows it with the filters; htmx swaps the table
alone (the page is not reloaded), the address keeps the filters, and what a failed sign-in
typed is shown as text, never run."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from orchestrator.models import AuditAction, AuditEntry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_filters_the_audit_trail_and_the_table_alone_is_swapped(signed_in, redis_conn):
    AuditEntry.objects.create(action=AuditAction.START, actor_name="ann", workflow_name="refund")
    AuditEntry.objects.create(action=AuditAction.CANCEL, actor_name="bob", workflow_name="refund")
    AuditEntry.objects.create(action=AuditAction.LOGIN_FAILED, actor_name="<img src=x onerror=alert(1)>")
    page = signed_in
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.click("nav >> text=Audit")
    page.wait_for_url("**/audit/")
    rows = page.locator("#audit-main tbody tr")
    expect(rows).to_have_count(3)
    page.evaluate("window.notReloaded = true")
    page.select_option("#filter-action", "cancel")
    page.wait_for_url("**/audit/?action=cancel")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("bob")
    page.fill("#filter-actor", "ann")
    page.select_option("#filter-action", "")
    page.wait_for_url("**/audit/?actor=ann")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("ann")
    assert page.evaluate("window.notReloaded") is True  # swapped by htmx, not a new page
    page.click("#clear-filters")
    page.wait_for_url("**/audit/")
    expect(rows).to_have_count(3)
    expect(page.locator("#audit-main tbody")).to_contain_text("<img src=x onerror=alert(1)>")
    assert dialogs == []
