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
