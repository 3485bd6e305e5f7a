"""What each role may not do, asked of the server directly (hidden buttons are not the check):
a viewer cannot publish, start, cancel, approve, decide an effect, reset a breaker or read
another person's tokens; an approver cannot run the operators' or designers' actions, nor
approve a run they started (four-eyes). A refused action changes nothing and audits nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from orchestrator.engine import breakers
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    ApiToken,
    ApprovalRequest,
    ApprovalStatus,
    AuditEntry,
    Effect,
    Run,
    RunStatus,
    WorkflowVersion,
)

from ..engine.test_approvals import play
from ..workflows import task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


@pytest.fixture
def open_breaker(settings):
    settings.RATCHET = {**settings.RATCHET, "CIRCUIT_BREAKERS": {"demo.partner_api": {"failures": 1,
                                                                                      "open_seconds": 60}}}
    breakers.record("demo.partner_api", breakers.configured()["demo.partner_api"], succeeded=False)
    return "demo.partner_api"


def reviewed_flow() -> str:
    """A workflow that waits for the approvers group, then pays (a confirmed effect)."""
    publish({"name": "reviewed", "start_at": "review", "states": {
        "review": {"type": "approval", "approvers": {"groups": ["approvers"]}, "next": "pay"},
        "pay": task("test.charge_with_compensation", end=True)}})
    return "reviewed"


@pytest.fixture
def waiting(person) -> Run:
    """A run of ``reviewed`` started by an operator, waiting for an approver."""
    return play(start_run(reviewed_flow(), user=person("otto", "operator"))[0])


def pending(run: Run) -> ApprovalRequest:
    return ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)


def test_a_viewer_cannot_publish_a_draft(signed_in):
    designer = signed_in("dana", "designer")
    assert designer.post(reverse("designer:new_draft"), {"name": "shop", "starter": "pipeline"}).status_code == 302
    viewer = signed_in("vera", "viewer")
    response = viewer.post(reverse("designer:publish", args=["shop"]), {"revision": 1, "message": "mine"})
    assert response.status_code == 403
    assert not Run.objects.exists() and not AuditEntry.objects.exists()
    assert not WorkflowVersion.objects.filter(workflow__name="shop").exists()


def test_a_viewer_cannot_start_cancel_or_approve_a_run(signed_in, waiting):
    viewer = signed_in("vera", "viewer")
    assert viewer.post(reverse("monitoring:start_run", args=["reviewed"]), {"input": "{}"}).status_code == 403
    assert viewer.post(reverse("monitoring:cancel_run", args=[waiting.pk]), {"reason": "no"}).status_code == 403
    assert viewer.post(reverse("monitoring:cancel_run", args=[waiting.pk]), {"compensate": "1"}).status_code == 403
    request = pending(waiting)
    refused = viewer.post(reverse("monitoring:decide_approval", args=[request.pk]), {"outcome": "approve"},
                          HTTP_ACCEPT="application/json")
    assert refused.status_code == 409 and "not among those who may decide" in refused.json()["message"]
    assert Run.objects.count() == 1 and Run.objects.get().status == RunStatus.WAITING
    assert pending(waiting).pk == request.pk
    assert set(AuditEntry.objects.values_list("action", flat=True)) == {"start"}  # the operator's, only


def test_a_viewer_cannot_redrive_or_decide_an_effect(signed_in, waiting):
    viewer = signed_in("vera", "viewer")
    effect = Effect.objects.create(run=waiting, key="charge", state_name="pay", status="uncertain",
                                   intent_at=timezone.now())
    assert viewer.post(reverse("monitoring:redrive_run", args=[waiting.pk])).status_code == 403
    assert viewer.post(reverse("monitoring:decide_effect", args=[waiting.pk, effect.pk]),
                       {"decision": "happened"}).status_code == 403
    effect.refresh_from_db()
    assert effect.status == "uncertain" and effect.decided_by is None


def test_a_viewer_cannot_reset_a_breaker(signed_in, open_breaker):
    viewer = signed_in("vera", "viewer")
    assert viewer.post(reverse("monitoring:reset_breaker"), {"handler": open_breaker}).status_code == 403
    assert breakers.states()[0].state == "open"
    assert not AuditEntry.objects.exists()


def test_a_viewer_sees_and_revokes_only_their_own_tokens(signed_in, person):
    owner = person("olga", "operator")
    theirs, secret = ApiToken.issue(owner, "olga-ci")
    viewer = signed_in("vera", "viewer")
    page = viewer.get(reverse("api_tokens")).content.decode()
    assert "olga-ci" not in page and theirs.prefix not in page and secret not in page
    assert viewer.post(reverse("api_token_revoke", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active
    assert viewer.post(reverse("api_tokens"), {"name": "vera-laptop"}).status_code == 200
    mine = ApiToken.objects.get(name="vera-laptop")
    assert mine.user.username == "vera"
    assert viewer.post(reverse("api_token_revoke", args=[mine.pk])).status_code == 302
    mine.refresh_from_db()
    assert not mine.is_active


def test_an_approver_cannot_act_as_an_operator_or_a_designer(signed_in, waiting, open_breaker):
    approver = signed_in("ann", "approver")
    assert approver.post(reverse("monitoring:start_run", args=["reviewed"]), {"input": "{}"}).status_code == 403
    assert approver.post(reverse("monitoring:cancel_run", args=[waiting.pk])).status_code == 403
    assert approver.post(reverse("monitoring:reset_breaker"), {"handler": open_breaker}).status_code == 403
    assert approver.post(reverse("designer:new_draft"), {"name": "x", "starter": "pipeline"}).status_code == 403
    assert approver.get(reverse("monitoring:audit")).status_code == 403
    assert Run.objects.get().status == RunStatus.WAITING


def test_an_approver_cannot_approve_a_run_they_started(signed_in):
    approver = signed_in("ann", "approver")
    run = play(start_run(reviewed_flow(), user=_user("ann"))[0])
    refused = approver.post(reverse("monitoring:decide_approval", args=[pending(run).pk]), {"outcome": "approve"},
                            HTTP_ACCEPT="application/json")
    assert refused.status_code == 409 and "four-eyes" in refused.json()["message"]
    assert pending(run).status == ApprovalStatus.PENDING
    assert not AuditEntry.objects.filter(action="approve").exists()


def test_an_approver_approves_a_run_someone_else_started(signed_in, waiting):
    approver = signed_in("ann", "approver")
    decided = approver.post(reverse("monitoring:decide_approval", args=[pending(waiting).pk]),
                            {"outcome": "approve"}, HTTP_ACCEPT="application/json")
    assert decided.status_code == 200, decided.content
    assert AuditEntry.objects.get(action="approve").actor_name == "ann"


def _user(username: str):
    return get_user_model().objects.get(username=username)
