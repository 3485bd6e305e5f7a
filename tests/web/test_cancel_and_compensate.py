"""Cancel and compensate from the run page: the button says what will be undone, needs the
operator's permission, and the run ends compensated; an uncertain effect shows what the ledger
knows next to its decision."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestrator.engine.runs import start_run
from orchestrator.models import Effect, EffectStatus, Event, EventKind, PauseReason, RunStatus, StepAttempt

from ..engine.test_approvals import play
from ..engine.test_cancel_and_compensate import two_charges_then_a_person

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waiting_run(redis_conn, sink_path, fast_engine):
    """A run with two confirmed effects, waiting for a person."""
    return play(start_run(two_charges_then_a_person())[0])


def test_the_run_page_offers_to_undo_the_confirmed_effects_newest_first(operator, waiting_run):
    page = operator.get(reverse("monitoring:run_detail", args=[waiting_run.pk])).content.decode()
    assert "Cancel and undo 2 effects" in page
    assert "undo its 2 confirmed effects (charge, then first)?" in page


def test_an_operator_cancels_and_compensates_and_the_run_ends_compensated(operator, waiting_run):
    response = operator.post(reverse("monitoring:cancel_run", args=[waiting_run.pk]),
                             {"compensate": "1", "reason": "customer withdrew"}, follow=True)
    assert "its confirmed effects are being undone, newest first" in response.content.decode()
    run = play(waiting_run)
    assert run.status == RunStatus.COMPENSATED
    assert set(Effect.objects.filter(run=run).values_list("status", flat=True)) == {EffectStatus.COMPENSATED}
    event = Event.objects.get(run=run, kind=EventKind.RUN_CANCELLED)
    assert event.actor.username == "otto" and event.data["compensate"] is True
    page = operator.get(reverse("monitoring:run_detail", args=[run.pk])).content.decode()
    assert "badge-compensated" in page


def test_a_viewer_may_not_cancel_and_compensate(viewer, waiting_run):
    page = viewer.get(reverse("monitoring:run_detail", args=[waiting_run.pk])).content.decode()
    assert "Cancel and undo" not in page
    assert viewer.post(reverse("monitoring:cancel_run", args=[waiting_run.pk]), {"compensate": "1"}).status_code == 403
    waiting_run.refresh_from_db()
    assert waiting_run.status == RunStatus.WAITING


def test_an_uncertain_effect_shows_what_the_ledger_knows(operator, waiting_run):
    effect = Effect.objects.get(run=waiting_run, key="first")
    attempt = StepAttempt.objects.get(pk=effect.attempt_id)
    StepAttempt.objects.filter(pk=attempt.pk).update(worker="host.4242")
    Effect.objects.filter(pk=effect.pk).update(status=EffectStatus.UNCERTAIN, intent_at=timezone.now())
    type(waiting_run).objects.filter(pk=waiting_run.pk).update(status=RunStatus.PAUSED,
                                                               pause_reason=PauseReason.UNCERTAIN_EFFECT)
    page = operator.get(reverse("monitoring:run_detail", args=[waiting_run.pk])).content.decode()
    assert "by first #1, try 1 on worker host.4242; downstream check: none (the effect cannot be looked up)" in page
    assert reverse("monitoring:decide_effect", args=[waiting_run.pk, effect.pk]) in page  # the decision form
