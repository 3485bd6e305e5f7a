"""Four-eyes through the pages: the person who started a run cannot approve its request, even as a
superuser (who may decide anything else), neither from the decision form nor by slipping it
into a bulk decision; another approver can."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from orchestrator.engine.runs import start_run
from orchestrator.models import ApprovalRequest, ApprovalStatus, Run, RunStatus

from ..engine.test_approvals import play, refund_flow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases."""


@pytest.fixture
def people(django_user_model) -> dict[str, Any]:
    """A superuser who starts runs (also in finance) and another finance approver."""
    finance = Group.objects.create(name="finance")
    boss = django_user_model.objects.create_superuser("boss", password="pw", email="")
    ann = django_user_model.objects.create_user("ann", password="pw")
    for user in (boss, ann):
        user.groups.add(finance)
    return {"boss": boss, "ann": ann}


def waiting(starter: Any) -> tuple[Run, ApprovalRequest]:
    run = play(start_run(refund_flow(), user=starter)[0])
    assert run.status == RunStatus.WAITING
    return run, ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)


def as_user(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_superuser_cannot_approve_the_run_they_started_from_the_form(people):
    run, request = waiting(people["boss"])
    response = as_user(people["boss"]).post(reverse("monitoring:decide_approval", args=[request.pk]),
                                            {"outcome": "approve", "comment": "mine, fine"}, follow=True)
    assert "four-eyes" in response.content.decode()
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and request.decided_by is None
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING


def test_a_bulk_decision_cannot_carry_the_deciders_own_run(people):
    own_run, own = waiting(people["boss"])
    _, other = waiting(people["ann"])
    response = as_user(people["boss"]).post(reverse("monitoring:decide_approvals"), {
        "outcome": "approve", "ids": [own.pk, other.pk], "comment": "all good", "confirmed": "1"}, follow=True)
    text = response.content.decode()
    assert f"Request #{own.pk} refused: four-eyes" in text
    own.refresh_from_db()
    other.refresh_from_db()
    assert own.status == ApprovalStatus.PENDING and other.status == ApprovalStatus.DECIDED
    assert Run.objects.get(pk=own_run.pk).status == RunStatus.WAITING


def test_another_approver_can_approve_it(people):
    run, request = waiting(people["boss"])
    as_user(people["ann"]).post(reverse("monitoring:decide_approval", args=[request.pk]), {"outcome": "approve"})
    request.refresh_from_db()
    assert request.status == ApprovalStatus.DECIDED and request.outcome == "approve"
    assert request.decided_by == people["ann"]
