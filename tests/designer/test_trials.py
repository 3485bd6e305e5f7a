"""Test one state for real: the handler runs once, its effects are recorded and never reach the
outside (the sink counts what really arrived), the output, usage and time are shown; a real
worker picks the trial up from the state's queue."""

from __future__ import annotations

import time

import pytest

from designer.drafts import create_draft
from designer.models import Trial
from designer.source import dump
from designer.trials import run_trial
from orchestrator.demo import sink

from .pages import post

MAIL = {"name": "mail_flow", "start_at": "send", "sample_input": {"to": "ada@example.com"},
        "states": {"send": {"type": "task", "handler": "tests.mailer", "input_path": "input", "end": True}}}


@pytest.fixture
def mail_flow(db):
    return create_draft("mail_flow", dump(MAIL, "yaml"), "yaml")


@pytest.mark.django_db
def test_a_trial_runs_the_handler_once_and_records_its_effects_without_doing_them(designer, mail_flow,
                                                                                  sink_path, redis_conn):
    html = post(designer, "test_state", draft="mail_flow", state="send",
                context='{"input": {"to": "bob@example.com"}}').content.decode()
    assert "trying send on a worker of queue default" in html and "Waiting for a worker" in html
    trial = Trial.objects.get()
    run_trial(trial.pk)  # what the worker does
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SUCCEEDED and trial.duration_ms > 0
    assert trial.output == {"to": "bob@example.com", "delivery": "<stubbed delivery>"}
    assert [e["key"] for e in trial.effects] == ["mail"] and trial.effects[0]["compensate"]
    assert trial.usage == {"tokens": 12, "cost": 0.002}
    assert sink.requests("mail-bob@example.com", sink_path) == 0  # recorded, never done
    run_trial(trial.pk)  # a second delivery of the job does nothing
    card = designer.get(f"/designer/mail_flow/trials/{trial.pk}/", HTTP_HX_REQUEST="true")
    assert card.status_code == 286 and "Effects it would have made" in card.content.decode()


@pytest.mark.django_db
def test_a_failing_handler_shows_its_error_and_bad_requests_are_refused(designer, mail_flow, redis_conn):
    post(designer, "test_state", draft="mail_flow", state="send", context='{"input": {}}')
    trial = Trial.objects.get()
    run_trial(trial.pk)
    trial.refresh_from_db()
    assert trial.status == Trial.Status.FAILED and trial.error["type"] == "KeyError"
    assert post(designer, "test_state", draft="mail_flow", state="send", context="{nope").status_code == 400
    assert Trial.objects.count() == 1


@pytest.mark.django_db
def test_only_a_task_with_a_registered_handler_can_be_tried(designer, redis_conn):
    create_draft("odd", dump({"name": "odd", "start_at": "w", "states": {
        "w": {"type": "wait", "seconds": 1, "next": "t"},
        "t": {"type": "task", "handler": "nobody.knows", "end": True}}}, "yaml"), "yaml")
    wait = post(designer, "test_state", draft="odd", state="w", context="{}")
    assert wait.status_code == 400 and "only a task" in wait.content.decode()
    unknown = post(designer, "test_state", draft="odd", state="t", context="{}")
    assert unknown.status_code == 400 and "not registered" in unknown.content.decode()
    assert not Trial.objects.exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_picks_the_trial_up_from_the_states_queue(designer, workers, sink_path):
    create_draft("mail_flow", dump(MAIL, "yaml"), "yaml")
    workers(1)
    post(designer, "test_state", draft="mail_flow", state="send", context='{"input": {"to": "cy@example.com"}}')
    deadline = time.monotonic() + 30
    while (trial := Trial.objects.get()).status != Trial.Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)
    assert trial.status == Trial.Status.SUCCEEDED and trial.worker
    assert sink.requests("mail-cy@example.com", sink_path) == 0
