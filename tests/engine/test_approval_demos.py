"""The approval demos, in-process: a large refund approved by a second person (and its saga
when the last step fails), a small one that needs nobody, and an agent's draft a person
corrects before it is sent. What arrives at the demo sink is what is checked."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orchestrator.demo import sink
from orchestrator.engine import approvals
from orchestrator.engine.errors import ApprovalRefused
from orchestrator.engine.runs import start_run
from orchestrator.models import ApprovalRequest, ApprovalStatus, EffectStatus, RunStatus
from orchestrator.stack import ensure_demo_role_users

from .test_approvals import play

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]
REFUND = {"order_id": "A-1", "amount": 240, "customer": "ann@example.com"}


@pytest.fixture(autouse=True)
def _demo(redis_conn, sink_path, fast_engine):
    call_command("load_demo", stdout=open(os.devnull, "w"))


@pytest.fixture
def users():
    ensure_demo_role_users()
    return {u.username: u for u in get_user_model().objects.all()}


def test_a_large_refund_waits_for_a_second_person_then_pays_and_emails_once(users):
    run = play(start_run("refund", REFUND, user=users["operator"])[0])
    assert run.status == RunStatus.WAITING and sink.payloads("reversal") == []
    request = ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)
    assert request.proposed["check"]["amount"] == 240
    with pytest.raises(ApprovalRefused, match="four-eyes"):
        approvals.decide(request.pk, users["operator"], "approve")
    with pytest.raises(ApprovalRefused, match="not among those who may decide .group approvers"):
        approvals.decide(request.pk, users["designer"], "approve")
    approvals.decide(request.pk, users["approver"], "approve", "receipt checked")
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert sink.payloads("reversal") == [{"order": "A-1", "amount": 240.0}]
    assert sink.payloads("email") == [{"to": "ann@example.com", "amount": 240.0}]


def test_the_approver_who_starts_a_refund_cannot_approve_it(users):
    run = play(start_run("refund", REFUND, user=users["approver"])[0])
    with pytest.raises(ApprovalRefused, match="four-eyes"):
        approvals.decide(ApprovalRequest.objects.get(run=run).pk, users["approver"], "approve")


def test_a_small_refund_needs_nobody():
    run = play(start_run("refund", {**REFUND, "amount": 40})[0])
    assert run.status == RunStatus.SUCCEEDED and not ApprovalRequest.objects.filter(run=run).exists()


def test_a_rejected_refund_pays_nothing(users):
    run = play(start_run("refund", REFUND, user=users["operator"])[0])
    approvals.decide(ApprovalRequest.objects.get(run=run).pk, users["approver"], "reject", "not eligible")
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED and run.output["approve_refund"]["outcome"] == "reject"
    assert sink.payloads("reversal") == []


def test_a_failing_last_step_undoes_the_email_then_the_reversal(users):
    run = play(start_run("refund", {**REFUND, "fail_at": "close_ticket"}, user=users["operator"])[0])
    approvals.decide(ApprovalRequest.objects.get(run=run).pk, users["approver"], "approve")
    run = play(run)
    assert run.status == RunStatus.FAILED
    assert sorted(run.effects.values_list("status", flat=True)) == [EffectStatus.COMPENSATED] * 2
    assert sink.kinds() == ["reversal", "email", "email_correction", "refund_reversed"]


def test_a_reviewer_corrects_the_drafted_reply_before_it_is_sent(users):
    run = play(start_run("drafted_reply", {"customer": "ann@example.com", "customer_name": "Ann",
                                            "message": "My parcel arrived damaged"}, user=users["operator"])[0])
    request = ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)
    assert request.gate and request.edit_key == "draft.data.body"
    assert "Hello Ann" in request.proposed["draft"]["data"]["body"] and sink.payloads("reply") == []
    approvals.decide(request.pk, users["approver"], "approve", data="Hello Ann, a new parcel is on its way.")
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    (sent,) = sink.payloads("reply")
    assert sent["body"] == "Hello Ann, a new parcel is on its way." and sent["to"] == "ann@example.com"


def test_a_rejected_draft_is_not_sent(users):
    run = play(start_run("drafted_reply", {"customer": "ann@example.com", "message": "Hi"},
                         user=users["operator"])[0])
    approvals.decide(ApprovalRequest.objects.get(run=run).pk, users["approver"], "reject", "tone is off")
    assert play(run).status == RunStatus.SUCCEEDED and sink.payloads("reply") == []
