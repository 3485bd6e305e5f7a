"""The fix-retry loop in Chromium: a run fails, an operator finds it from the failure
dashboard by drilling down, and redrives it from its page once the cause is fixed."""

from __future__ import annotations

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import EventKind, Run, RunStatus

from ..engine.test_transitions import drain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_finds_a_failed_run_by_drilling_down_and_redrives_it(signed_in, redis_conn, sink_path,
                                                                         fast_engine, tmp_path, screenshots):
    flag = tmp_path / "fixed"
    publish({"name": "flaky_flow", "start_at": "step", "states": {
        "step": {"type": "task", "handler": "test.fail_until_flag", "end": True}}})
    failed = drain(start_run("flaky_flow", {"flag": str(flag)})[0])
    assert failed.status == RunStatus.FAILED
    page = signed_in
    page.click("nav >> text=Failures")
    page.wait_for_url("**/failures/")
    assert "the flag file is missing" in page.locator("table.clusters").inner_text()
    page.click("table.clusters >> text=See the runs")
    page.wait_for_url("**/runs/?*fingerprint=*")
    page.click(f"text={str(failed.pk)[:8]}")
    page.wait_for_url(f"**/runs/{failed.pk}/")
    assert "Redrive from the failed step" in page.content()
    flag.touch()  # the cause is fixed
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Redrive from the failed step')")
    page.locator(".messages").wait_for()
    assert "Run redriven" in page.locator(".messages").inner_text()
    run = drain(Run.objects.get(pk=failed.pk))
    assert run.status == RunStatus.SUCCEEDED and run.redrive_count == 1
    assert run.events.get(kind=EventKind.RUN_REDRIVEN).actor.username == "ops"
    page.goto(f"/runs/{run.pk}/")
    page.screenshot(path=str(screenshots / "run-redriven.png"), full_page=True)
