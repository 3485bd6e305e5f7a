"""The demos beyond the order pipeline, driven in-process: the supervisor/worker research
(three parallel workers, the best-scored cited draft published once) and the document
summary pipeline."""

from __future__ import annotations

import os

import pytest
from django.core.management import call_command

from orchestrator.demo import sink
from orchestrator.engine.runs import start_run
from orchestrator.models import Effect, EventKind, RunStatus

from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _demo(redis_conn, sink_path, fast_engine):
    call_command("load_demo", stdout=open(os.devnull, "w"))


def test_research_publishes_the_best_cited_answer_once():
    run = drain(start_run("research", {"question": "How many business days until my refund reaches the card?"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output["answer"].endswith("]") and run.output["citations"]
    assert run.output["source"] in ("handbook", "faq", "changelog")
    effects = list(Effect.objects.filter(run=run).order_by("id"))
    searches = sorted(e.state_name for e in effects if e.key == "search_call")
    assert searches == ["retrieve_changelog", "retrieve_faq", "retrieve_handbook"]  # one effect per branch step
    assert [e.key for e in effects].count("publish") == 1
    for effect in effects:
        assert sink.deliveries(effect.idempotency_key) == 1
    assert run.events.filter(kind=EventKind.JOINED).count() == 1
    assert run.tokens_used > 0


def test_a_question_no_source_covers_fails_before_publishing():
    run = drain(start_run("research", {"question": "Quantum chromodynamics lattice?"})[0])
    assert run.status == RunStatus.FAILED and "no source" in run.error["message"]
    assert not Effect.objects.filter(run=run, key="publish").exists()


def test_the_summary_pipeline_summarises_a_shipped_document_and_publishes_it_once():
    run = drain(start_run("summarise_document", {"doc_id": "CL-2"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output["summary"].startswith("Faster refunds.")
    assert "3 business days" in run.context["extract"]["facts"]
    assert 0 < run.tokens_used <= 5000
    (effect,) = Effect.objects.filter(run=run)
    assert sink.deliveries(effect.idempotency_key) == 1


def test_the_summary_pipeline_refuses_an_unknown_document_clearly():
    run = drain(start_run("summarise_document", {"doc_id": "NOPE"})[0])
    assert run.status == RunStatus.FAILED and "no document 'NOPE'" in run.error["message"]


# --- the single agent: where is my order? -----------------------------------------------------------


def test_the_order_assistant_tracks_the_parcel_with_its_tools_and_emails_the_answer_once():
    run = drain(start_run("order_assistant", {"question": "Where is my order?", "order_id": "A-1001",
                                              "customer": "ann@example.com"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "out for delivery" in run.output["text"] and run.output["to"] == "ann@example.com"
    turns = run.attempts.filter(state_name="assistant").order_by("id")
    assert [a.output["turn"] for a in turns] == [1, 2, 3]  # lookup, track, answer: one step each
    assert run.context["assistant"]["data"]["status"] == "out for delivery"
    assert sink.deliveries(Effect.objects.get(run=run, key="reply").idempotency_key) == 1
    assert run.tokens_used > 0 and run.cost_used > 0


def test_the_order_assistant_says_so_when_the_order_has_not_shipped_or_does_not_exist():
    asked = {"question": "Where is it?", "customer": "bob@example.com"}
    preparing = drain(start_run("order_assistant", {**asked, "order_id": "A-1002"})[0])
    assert "being prepared" in preparing.output["text"]
    unknown = drain(start_run("order_assistant", {**asked, "order_id": "Z-9"})[0])
    assert "could not find an order Z-9" in unknown.output["text"]


def test_the_order_assistant_refuses_a_question_without_an_order_number_as_context_loss():
    run = drain(start_run("order_assistant", {"question": "Where is my order?", "customer": "ann@example.com"})[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == "context_loss"
    assert "'order_id'" in run.error["message"]
    assert not run.attempts.exclude(state_name="assistant").exists()


# --- the peer network: triage, billing, technical ---------------------------------------------------------


def test_triage_hands_a_double_charge_to_billing_which_refunds_it_once():
    run = drain(start_run("support_network", {"question": "I was charged twice this month",
                                              "customer": "ann@example.com"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "INV-2001" in run.output["text"] and "refunded" in run.output["text"]
    assert sink.deliveries(Effect.objects.get(run=run, key="refund-INV-2001").idempotency_key) == 1
    assert run.depth_used == 1
    assert run.attempts.get(state_name="billing", sequence=run.attempts.filter(
        state_name="billing").order_by("sequence").first().sequence).input == {
        "question": "I was charged twice this month", "customer": "ann@example.com"}


def test_billing_hands_the_technical_remainder_on_with_its_note():
    run = drain(start_run("support_network", {"question": "Refund the double charge, and the app crashes on start",
                                              "customer": "ann@example.com"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.depth_used == 2
    assert "refunded" in run.output["text"] and "KB-11" in run.output["text"]
    technical = run.attempts.filter(state_name="technical").order_by("id").first()
    assert set(technical.input) == {"question", "billing_note"}  # not the customer's address
    assert list(run.events.filter(kind=EventKind.HANDED_OFF).values_list("data__to", flat=True)) == [
        "billing", "technical"]


def test_a_general_question_is_answered_by_triage_without_a_handoff():
    run = drain(start_run("support_network", {"question": "Do you have a newsletter?", "customer": "x@y.z"})[0])
    assert run.status == RunStatus.SUCCEEDED and run.depth_used == 0
    assert "within a day" in run.output["text"]


def test_billing_refuses_a_handoff_without_the_customer_as_context_loss():
    run = drain(start_run("support_network", {"question": "Refund my invoice"})[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == "context_loss"
    assert "input field 'customer'" in run.error["message"]


def test_an_input_that_breaks_the_workflows_input_schema_starts_nothing_and_names_each_field():
    from orchestrator.engine.errors import InputInvalid
    from orchestrator.models import Run

    with pytest.raises(InputInvalid) as refused:
        start_run("order_fulfilment", {"items": [{"sku": "X", "qty": 0, "price": 1}]})
    assert refused.value.fields == {"order_id": "is required", "items.0.qty": "0 is less than the minimum of 1"}
    assert not Run.objects.exists()
