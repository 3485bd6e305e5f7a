"""Cancel and compensate: an operator stops a run and has its confirmed effects undone, newest
first, each compensation a durable attempt with retries; the run ends compensated, or pauses
on a compensation that failed until the operator retries it or marks it done."""

from __future__ import annotations

import time

import pytest

from orchestrator.demo import sink
from orchestrator.engine.errors import InvalidTransition
from orchestrator.engine.runs import cancel_run, decide_effect, start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import Effect, EffectStatus, Event, EventKind, PauseReason, RunStatus

from ..workflows import task
from .test_approvals import play

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def two_charges_then_a_person(second: str = "test.charge_with_compensation") -> str:
    publish({"name": "two_charges", "start_at": "first", "states": {
        "first": task("test.charge_with_compensation", args={"key": "first"}, next="second"),
        "second": task(second, next="review"),
        "review": {"type": "approval", "next": "done"},
        "done": task("demo.noop", end=True)}})
    return "two_charges"


def test_cancel_and_compensate_undoes_confirmed_effects_newest_first(django_user_model):
    operator = django_user_model.objects.create_user("otto")
    run = play(start_run(two_charges_then_a_person())[0])
    assert run.status == RunStatus.WAITING
    cancel_run(run.pk, operator, "customer withdrew", compensate=True)
    run = play(run)
    assert run.status == RunStatus.COMPENSATED and run.finished_at is not None
    assert sink.kinds() == ["charge", "charge", "undo", "undo"]
    undone = Effect.objects.filter(run=run).order_by("compensated_at")
    assert [e.key for e in undone] == ["charge", "first"] and {e.status for e in undone} == {EffectStatus.COMPENSATED}
    cancelled = Event.objects.get(run=run, kind=EventKind.RUN_CANCELLED)
    assert cancelled.actor == operator and cancelled.data == {"compensate": True, "reason": "customer withdrew"}
    assert Event.objects.filter(run=run, kind=EventKind.RUN_COMPENSATED).count() == 1


def test_a_failed_compensation_pauses_until_marked_done_by_hand(settings):
    settings.RATCHET = {**settings.RATCHET, "COMPENSATION_MAX_ATTEMPTS": 2}
    run = play(start_run(two_charges_then_a_person("test.charge_with_fragile_undo"))[0])
    cancel_run(run.pk, compensate=True)
    run = play(run)
    for _ in range(5):  # the compensation's retry (a second later) fails too
        if run.status == RunStatus.PAUSED:
            break
        time.sleep(1.1)
        run = play(run)
    assert run.status == RunStatus.PAUSED and run.pause_reason == PauseReason.COMPENSATION_FAILED
    failed = Effect.objects.get(run=run, status=EffectStatus.COMPENSATION_FAILED)
    decide_effect(failed.pk, "done")
    run = play(run)
    assert run.status == RunStatus.COMPENSATED
    assert sink.kinds() == ["charge", "charge", "undo"]  # the first charge undone here, the other by hand


def test_a_finished_run_cannot_be_cancelled():
    publish({"name": "quick", "start_at": "a", "states": {"a": task("demo.noop", end=True)}})
    run = play(start_run("quick")[0])
    with pytest.raises(InvalidTransition, match="a succeeded run cannot be cancelled"):
        cancel_run(run.pk, compensate=True)
