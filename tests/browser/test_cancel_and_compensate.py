"""An operator cancels a run and undoes its effects from the run page in Chromium: the
confirmation names what will be undone, and the page follows the saga to "compensated"
without a reload."""

from __future__ import annotations

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.models import Run, RunStatus

from ..engine.test_approvals import play
from ..engine.test_cancel_and_compensate import two_charges_then_a_person

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_cancels_and_undoes_a_runs_effects_from_its_page(signed_in, redis_conn, sink_path, fast_engine,
                                                                     screenshots):
    page = signed_in
    run = play(start_run(two_charges_then_a_person())[0])
    page.goto(f"/runs/{run.pk}/")
    asked = []

    def accept(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("text=Cancel and undo 2 effects")
    page.locator(".message.success").wait_for()
    assert "undo its 2 confirmed effects (charge, then first)" in asked[0]
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPENSATING
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    play(run)  # the workers' part: the two compensations
    page.locator(".summary .badge-compensated").wait_for(timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=str(screenshots / "run-compensated.png"), full_page=True)
