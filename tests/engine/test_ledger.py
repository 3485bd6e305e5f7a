"""The effects ledger, driven in-process: each test plays the workers itself (claiming,
losing a lease, waking late), so every interleaving the issue names is reproduced exactly.
Deliveries are counted at the sink, outside the engine's database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F

from orchestrator.demo import sink
from orchestrator.engine import ledger
from orchestrator.engine.effects import NOT_FOUND, perform_effect
from orchestrator.engine.errors import Cancelled, EffectKeyClash, EffectNotDone, EffectUncertain, InvalidTransition
from orchestrator.engine.runs import decide_effect, redrive_run, start_run
from orchestrator.engine.transitions import claim_attempt, recover_lost
from orchestrator.models import (
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    PauseReason,
    RunStatus,
    StepAttempt,
)

from ..workflows import chain, task
from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def deliver(kind: str = "charge"):
    """An effect function that really delivers at the sink, with no idempotency key honoured."""
    return lambda key: sink.deliver(key, kind, {})


def lose_lease(claim) -> None:
    """The worker holding ``claim`` stops renewing (frozen or dead); the sweeper notices."""
    StepAttempt.objects.filter(pk=claim.attempt.pk).update(lease_expires_at=F("claimed_at") - timedelta(seconds=1))
    assert recover_lost(claim.attempt.pk)


def next_claim(run, worker: str = "w2"):
    attempt = run.attempts.filter(status=AttemptStatus.SCHEDULED).order_by("-id").first()
    return claim_attempt(attempt.pk, worker)


def one_step_run(name: str = "ledgered", **args):
    """A run whose first step pays through ``ctx.effect("payment", ...)`` (``args.idempotent``
    to pass the key downstream), claimed by worker "w1"."""
    chain(name, ("pay", task("test.effect_with_pause", args=args)), ("after", task("demo.noop")))
    run, _ = start_run(name)
    return run, claim_attempt(run.attempts.get().pk, "w1")


# --- identity: scoped to the step, shared only on request -------------------------------------------


def test_two_states_using_the_same_key_make_two_effects():
    chain("two_charges", ("first", task("test.charge_with_compensation")),
          ("second", task("test.charge_with_compensation")))
    run = drain(start_run("two_charges")[0])
    assert run.status == RunStatus.SUCCEEDED
    effects = list(Effect.objects.filter(run=run).order_by("id"))
    assert [e.state_name for e in effects] == ["first", "second"]
    assert len({e.idempotency_key for e in effects}) == 2
    assert sum(sink.deliveries(e.idempotency_key) for e in effects) == 2  # both charges happened


def test_a_shared_key_is_one_effect_for_the_whole_run():
    run, claim = one_step_run()
    first = perform_effect(claim, "token", deliver(), shared=True)
    again = perform_effect(claim, "token", deliver(), shared=True)
    assert first == again
    effect = Effect.objects.get(run=run)
    assert effect.shared and effect.executions == 1 and effect.dedup_hits == 1


def test_mixing_a_shared_and_an_unshared_use_of_one_key_is_refused_naming_both_steps():
    run, claim = one_step_run()
    perform_effect(claim, "charge", deliver(), shared=True)
    with pytest.raises(EffectKeyClash, match=r"shared across the run by step 'pay' \(step 1\).*step 'pay' \(step 1\)"):
        perform_effect(claim, "charge", deliver())
    assert Effect.objects.filter(run=run).count() == 1


# --- fencing: a worker that lost its claim cannot write the ledger ----------------------------------


def test_a_late_confirmation_never_overwrites_a_compensated_effect():
    """The issue's reproduction: frozen inside a non-idempotent effect, lease lost, the resume
    pauses as uncertain, the operator compensates, the old worker wakes and reports."""
    chain("zombie", ("pay", task("test.charge_with_compensation")), ("after", task("demo.noop")))
    run, _ = start_run("zombie")
    old = claim_attempt(run.attempts.get().pk, "frozen")
    decision = ledger.open_intent(old, "charge", shared=False, idempotent=False,
                                  compensate_path="tests.testapp.handlers:undo_charge", has_check=False)
    receipt = sink.deliver(decision.effect.idempotency_key, "charge", {})  # it happened downstream...
    lose_lease(old)  # ...but the worker froze before confirming
    run = drain(run)
    assert run.status == RunStatus.PAUSED
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.UNCERTAIN
    decide_effect(effect.pk, "compensate")
    run = drain(run)
    assert run.status == RunStatus.FAILED
    effect.refresh_from_db()
    assert effect.status == EffectStatus.COMPENSATED

    assert ledger.confirm(old, decision.effect, receipt) is False  # the zombie wakes up
    effect.refresh_from_db()
    assert effect.status == EffectStatus.COMPENSATED  # not flipped back to confirmed
    late = Event.objects.get(run=run, kind=EventKind.EFFECT_LATE_RESULT)
    assert late.data["result"] == receipt and late.data["status_seen"] == EffectStatus.COMPENSATED
    assert effect.duplicates == 0  # one execution, reported twice: no duplicate
    with pytest.raises(InvalidTransition, match="compensated"):
        redrive_run(run.pk)


def test_a_late_result_while_paused_leaves_the_operator_a_decision():
    run, old = one_step_run()
    decision = ledger.open_intent(old, "email", shared=False, idempotent=False, compensate_path="", has_check=False)
    lose_lease(old)
    second = next_claim(run)
    with pytest.raises(EffectUncertain):
        perform_effect(second, "email", deliver("email"))
    assert ledger.confirm(old, decision.effect, {"delivery": 1}) is False  # wakes while uncertain
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.UNCERTAIN
    assert Event.objects.filter(run=run, kind=EventKind.EFFECT_LATE_RESULT).exists()


def test_a_late_result_before_the_resume_reaches_the_effect_resolves_it():
    """The old worker reports after losing its claim but before the new attempt asks: the new
    attempt uses what it reported instead of pausing (it happened, with that result)."""
    run, old = one_step_run()
    decision = ledger.open_intent(old, "email", shared=False, idempotent=False, compensate_path="", has_check=False)
    lose_lease(old)
    assert ledger.confirm(old, decision.effect, {"delivery": 7}) is False
    second = next_claim(run)
    assert perform_effect(second, "email", deliver("email")) == {"delivery": 7}
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.CONFIRMED and effect.executions == 1 and effect.duplicates == 0


def test_a_zombie_that_executes_after_a_retry_is_counted_as_a_duplicate():
    run, old = one_step_run()
    decision = ledger.open_intent(old, "payment", shared=False, idempotent=False, compensate_path="",
                                  has_check=False)
    lose_lease(old)  # frozen before it reached the downstream
    run = drain(run)
    assert run.status == RunStatus.PAUSED
    effect = Effect.objects.get(run=run)
    decide_effect(effect.pk, "retry")  # the operator looked: nothing arrived
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED
    zombie_receipt = sink.deliver(decision.effect.idempotency_key, "payment", {})  # the zombie wakes, delivers
    ledger.confirm(old, decision.effect, zombie_receipt)
    effect.refresh_from_db()
    assert sink.deliveries(effect.idempotency_key) == 2
    assert effect.duplicates == 1 and len(effect.completed_by) == 2
    assert Event.objects.filter(run=run, kind=EventKind.EFFECT_DUPLICATED).count() == 1


def test_a_late_result_after_success_does_not_replace_the_stored_one():
    run, old = one_step_run(idempotent=True)
    decision = ledger.open_intent(old, "payment", shared=False, idempotent=True, compensate_path="",
                                  has_check=False)
    lose_lease(old)
    run = drain(run)  # the resume retries the idempotent effect and the run succeeds
    assert run.status == RunStatus.SUCCEEDED
    effect = Effect.objects.get(run=run)
    stored = effect.result
    ledger.confirm(old, decision.effect, {"delivery": "late"})
    effect.refresh_from_db()
    assert effect.result == stored and effect.unknown_retries == 1


def test_intent_from_an_attempt_that_lost_its_claim_is_refused():
    run, old = one_step_run()
    lose_lease(old)
    with pytest.raises(Cancelled):
        perform_effect(old, "charge", deliver())
    assert not Effect.objects.filter(run=run).exists()
    assert sink.stats()["delivered"] == 0


# --- failures inside the effect function -------------------------------------------------------------


def test_an_exception_from_a_non_idempotent_effect_pauses_the_run_instead_of_retrying():
    chain("timeouts", ("pay", task("test.effect_fails_first", args={"refused": False},
                                   retry=[{"max_attempts": 3, "interval_seconds": 0}])))
    run = drain(start_run("timeouts")[0])
    assert run.status == RunStatus.PAUSED and run.pause_reason == PauseReason.UNCERTAIN_EFFECT
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.UNCERTAIN and effect.error["type"] == "TimeoutError"
    assert run.attempts.count() == 1  # no retry ran it again unasked


def test_an_effect_the_handler_swallowed_as_uncertain_still_pauses_the_step():
    chain("swallower", ("pay", task("test.swallows_uncertain")))
    run = drain(start_run("swallower")[0])
    assert run.status == RunStatus.PAUSED


# --- reconciliation through check --------------------------------------------------------------------


@pytest.mark.parametrize("delivered", [True, False])
def test_an_unknown_outcome_with_a_check_is_resolved_without_an_operator(delivered):
    run, old = one_step_run()
    decision = ledger.open_intent(old, "charge", shared=False, idempotent=False, compensate_path="", has_check=True)
    if delivered:
        sink.deliver(decision.effect.idempotency_key, "charge", {})
    lose_lease(old)
    second = next_claim(run)
    result = perform_effect(second, "charge", deliver(), check=lambda key: sink.lookup(key) or NOT_FOUND)
    effect = Effect.objects.get(run=run)
    assert effect.status == EffectStatus.CONFIRMED
    assert sink.deliveries(effect.idempotency_key) == 1  # found: not again; not found: done once
    assert effect.executions == (1 if delivered else 2)
    assert result["delivery"] == sink.lookup(effect.idempotency_key)["delivery"]
    assert Event.objects.get(run=run, kind=EventKind.EFFECT_CHECKED).data["found"] is delivered


def test_a_raising_effect_with_a_check_asks_at_once():
    run, claim = one_step_run()

    def timeout_after_delivery(key):
        sink.deliver(key, "charge", {})
        raise TimeoutError("the answer was lost")

    result = perform_effect(claim, "charge", timeout_after_delivery, check=lambda k: sink.lookup(k) or NOT_FOUND)
    assert result["delivery"] >= 1
    assert Effect.objects.get(run=run).status == EffectStatus.CONFIRMED


def test_effect_not_done_marks_it_failed_and_re_executable():
    run, claim = one_step_run()

    def refused(key):
        raise EffectNotDone("card declined before anything was charged")

    with pytest.raises(EffectNotDone):
        perform_effect(claim, "charge", refused)
    assert Effect.objects.get(run=run).status == EffectStatus.FAILED


def test_a_check_that_finds_a_zombie_delivery_credits_no_attempt_so_no_false_duplicate():
    """Found in chaos: A froze before delivering; B's check found nothing and B took over, then
    died; A woke and delivered; C's check found A's delivery. Crediting B (the owner) and then
    A (when it reported) counted a duplicate the sink never received."""
    run, a = one_step_run()
    check = lambda key: sink.lookup(key) or NOT_FOUND  # noqa: E731
    intent = ledger.open_intent(a, "payment", shared=False, idempotent=False, compensate_path="", has_check=True)
    lose_lease(a)
    b = next_claim(run)
    seen = ledger.open_intent(b, "payment", shared=False, idempotent=False, compensate_path="", has_check=True)
    assert ledger.resolve_by_check(b, seen.effect, False, None).action == ledger.EXECUTE  # B owns it now
    lose_lease(b)  # B dies before delivering
    receipt = sink.deliver(intent.effect.idempotency_key, "payment", {})  # A wakes and delivers
    c = next_claim(run, "w3")
    assert perform_effect(c, "payment", deliver(), check=check) == {"delivery": receipt["delivery"],
                                                                     "replayed": False}
    ledger.confirm(a, intent.effect, receipt)  # A reports, late
    effect = Effect.objects.get(run=run)
    assert sink.deliveries(effect.idempotency_key) == 1
    assert effect.duplicates == 0 and effect.completed_by == [a.attempt.pk]
