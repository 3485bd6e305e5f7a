"""An approval in Chromium: the person who started the run may not decide it (four-eyes, said
where they clicked, and kept through the run page's polls, like the comment they were typing);
a colleague sees the count in the navigation, opens the inbox, reads the context, comments and
approves; the run page opened before follows the run to its end by itself. Screenshots are
kept under var/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group

from orchestrator.engine.runs import start_run
from orchestrator.models import ApprovalRequest, ApprovalStatus, Run, RunStatus
from orchestrator.roles import ensure_role_groups

from ..engine.test_approvals import play, refund_flow

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-enough"
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture
def people(django_user_model) -> dict[str, Any]:
    """Alice starts runs and is an approver too; Bea is a second approver (both may see runs)."""
    finance = Group.objects.create(name="finance")
    made = {name: django_user_model.objects.create_user(name, password=PASSWORD) for name in ("alice", "bea")}
    for user in made.values():
        user.groups.add(finance, ensure_role_groups()["viewer"])
    return made


@pytest.fixture
def sign_in(browser, live_server) -> Iterator[Any]:
    """``sign_in(name)``: a page in a browser context of its own, signed in as ``name``."""
    contexts = []

    def open_as(name: str) -> Any:
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/accounts/login/")
        page.fill("#id_username", name)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def next_poll(page: Any) -> None:
    """Wait until the run page's poll has been answered (and swapped) once more."""
    with page.expect_response(lambda response: "fragment=live" in response.url):
        pass
    page.wait_for_timeout(200)


def test_a_colleague_approves_and_the_run_page_follows(people, sign_in, redis_conn, sink_path, fast_engine,
                                                       screenshots):
    run = play(start_run(refund_flow(), {}, user=people["alice"])[0])
    assert run.status == RunStatus.WAITING
    request = ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)

    alice = sign_in("alice")
    alice.goto(f"/runs/{run.pk}/")
    alice.evaluate("window.__sameDocument = true")  # gone if the page reloads
    panel = alice.locator("section.approvals-panel")
    assert "Refund 120" in panel.inner_text() and "You may not decide this: four-eyes" in panel.inner_text()
    context = panel.locator(f"#approval-{request.pk} details.json")
    context.locator("summary").click()
    comment = alice.locator(f"#comment-{request.pk}")
    comment.click()
    comment.type("Looks right")
    next_poll(alice)
    next_poll(alice)
    comment.type(", go", delay=150)  # typed across the swaps: nothing lost, the focus stays
    assert comment.input_value() == "Looks right, go"
    assert alice.evaluate("document.activeElement.id") == f"comment-{request.pk}"
    assert context.get_attribute("open") is not None  # the context opened stays open

    alice.click(f"#decide-{request.pk} button[value=approve]")
    refusal = alice.locator(f"#approval-{request.pk} .approval-error")
    refusal.wait_for()
    assert "Refused: four-eyes: you started this run, so another person must decide" in refusal.inner_text()
    next_poll(alice)
    assert refusal.is_visible() and comment.input_value() == "Looks right, go"  # the poll kept both
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING
    alice.set_viewport_size({"width": 390, "height": 844})
    assert alice.evaluate(OVERFLOW) <= 1, "the run page's approvals panel overflows a phone-sized window"
    alice.set_viewport_size({"width": 1280, "height": 800})

    bea = sign_in("bea")
    count = bea.locator("#approvals-count .nav-count-n")
    count.wait_for()
    assert count.inner_text() == "1"
    assert "approver" not in bea.locator(".who").inner_text()  # in the group, without the permission
    bea.click("a.nav-approvals")
    bea.wait_for_url("**/approvals/")
    card = bea.locator(f"#approval-{request.pk}")
    assert "Refund 120" in card.inner_text() and "refund" in card.inner_text()
    assert "alice" not in card.locator(".approval-facts").inner_text()  # four-eyes: not among who may decide
    card.locator("details.json summary").click()
    assert '"amount": 120' in card.locator("details.json pre").inner_text()
    bea.set_viewport_size({"width": 390, "height": 844})
    assert bea.evaluate(OVERFLOW) <= 1, "the inbox overflows a phone-sized window"
    bea.set_viewport_size({"width": 1280, "height": 800})
    card.locator(f"#comment-{request.pk}").fill("Checked the invoice <b>twice</b>")
    bea.screenshot(path=str(screenshots / "approvals-inbox.png"), full_page=True)
    card.locator("button[value=approve]").click()
    bea.locator(f"#approval-{request.pk} .approval-decision").wait_for()
    assert "approve by bea" in bea.locator(f"#approval-{request.pk}").inner_text()
    bea.wait_for_function("() => document.querySelector('#approvals-count').textContent === ''")

    run = play(Run.objects.get(pk=run.pk))  # the step after the approval, run here instead of by a worker
    assert run.status == RunStatus.SUCCEEDED
    alice.locator("#run-live .summary .badge-succeeded").wait_for(timeout=15_000)
    assert alice.evaluate("window.__sameDocument") is True
    decided = alice.locator(f"#approval-{request.pk}").inner_text()
    assert "approve by bea" in decided and "Checked the invoice <b>twice</b>" in decided
    assert alice.locator(f"#decide-{request.pk}").count() == 0
    alice.screenshot(path=str(screenshots / "approvals-run.png"), full_page=True)

    bea.click("nav.tabs >> text=Decided")
    bea.wait_for_url("**/approvals/?tab=decided")
    assert bea.locator(f"#decided-{request.pk}").is_visible()
    bea.go_back()
    bea.wait_for_url("**/approvals/")
