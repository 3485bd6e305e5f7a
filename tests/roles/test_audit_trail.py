"""Each audited action leaves one entry naming who, what, on what and from where, whether it
came through a page or straight through the engine (as the JSON API and commands do); a
refused or failed action leaves none."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from orchestrator.engine import approvals, breakers, ledger
from orchestrator.engine.errors import InvalidTransition
from orchestrator.engine.runs import cancel_run, start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import ApiToken, AuditAction, AuditEntry, Effect, EffectStatus, RunStatus

from ..engine.test_approvals import play
from ..engine.test_ledger import lose_lease, one_step_run
from ..workflows import task
from .test_refusals import pending, reviewed_flow

pytestmark = pytest.mark.django_db(transaction=True)

WITH_ADDRESSES = "orchestrator.middleware.AuditAddressMiddleware"


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine, settings):
    """Real Redis, a private sink, short leases; the audit's middleware (the addresses) is on."""
    assert WITH_ADDRESSES in settings.MIDDLEWARE


def only_entry(action: str) -> AuditEntry:
    entries = list(AuditEntry.objects.filter(action=action))
    assert len(entries) == 1, [str(e) for e in AuditEntry.objects.all()]
    return entries[0]


def test_publishing_from_the_designer_is_audited(signed_in):
    designer = signed_in("dana", "designer")
    designer.post(reverse("designer:new_draft"), {"name": "shop", "starter": "pipeline"})
    response = designer.post(reverse("designer:publish", args=["shop"]), {"revision": 1, "message": "first cut"})
    assert response.status_code == 302
    entry = only_entry(AuditAction.PUBLISH)
    assert (entry.actor.username, entry.actor_name, entry.workflow_name) == ("dana", "dana", "shop")
    assert entry.detail == {"version": 1, "message": "first cut"} and entry.target_type == "workflowversion"
    assert entry.address == "127.0.0.1"


def test_starting_and_cancelling_from_the_pages_are_audited(signed_in):
    reviewed_flow()
    operator = signed_in("otto", "operator")
    assert operator.post(reverse("monitoring:start_run", args=["reviewed"]), {"input": "{}"}).status_code == 302
    started = only_entry(AuditAction.START)
    run = started.run
    assert started.actor_name == "otto" and started.workflow_name == "reviewed" and started.detail["version"] == 1
    operator.post(reverse("monitoring:cancel_run", args=[run.pk]), {"reason": "wrong customer"})
    cancelled = only_entry(AuditAction.CANCEL)
    assert cancelled.run_id == run.pk and cancelled.detail == {"reason": "wrong customer"}
    assert cancelled.address == "127.0.0.1"


def test_cancelling_with_compensation_is_audited_as_compensate(signed_in, person):
    run = play(start_run(reviewed_flow(), user=person("olga", "operator"))[0])
    operator = signed_in("otto", "operator")
    operator.post(reverse("monitoring:cancel_run", args=[run.pk]), {"compensate": "1", "reason": "withdrawn"})
    entry = only_entry(AuditAction.COMPENSATE)
    assert entry.actor_name == "otto" and entry.run_id == run.pk
    assert not AuditEntry.objects.filter(action=AuditAction.CANCEL).exists()


def test_a_redrive_from_the_run_page_is_audited(signed_in, person, tmp_path: Path):
    publish({"name": "flaky", "start_at": "step", "states": {
        "step": task("test.fail_until_flag", end=True)}})
    run = play(start_run("flaky", {"flag": str(tmp_path / "fixed")}, user=person("olga", "operator"))[0])
    assert run.status == RunStatus.FAILED
    operator = signed_in("otto", "operator")
    operator.post(reverse("monitoring:redrive_run", args=[run.pk]))
    entry = only_entry(AuditAction.REDRIVE)
    assert entry.actor_name == "otto" and entry.run_id == run.pk and entry.detail["state"] == "step"


@pytest.mark.parametrize(("outcome", "action"), [("approve", AuditAction.APPROVE), ("reject", AuditAction.REJECT)])
def test_approving_and_rejecting_from_the_inbox_are_audited(signed_in, person, outcome, action):
    run = play(start_run(reviewed_flow(), user=person("otto", "operator"))[0])
    approver = signed_in("ann", "approver")
    approver.post(reverse("monitoring:decide_approval", args=[pending(run).pk]),
                  {"outcome": outcome, "comment": "checked the invoice"})
    entry = only_entry(action)
    assert entry.actor_name == "ann" and entry.run_id == run.pk and entry.target_type == "approvalrequest"
    assert entry.detail["comment"] == "checked the invoice" and entry.detail["ahead"] is False


def test_a_decision_kept_ahead_of_the_run_is_audited(person):
    publish({"name": "later", "start_at": "wait", "states": {
        "wait": {"type": "wait", "seconds": 3600, "next": "review"},
        "review": {"type": "approval", "approvers": {"groups": ["approvers"]}, "next": "done"},
        "done": task("demo.noop", end=True)}})
    run = start_run("later", user=person("otto", "operator"))[0]
    approvals.decide_ahead(run.pk, "review", person("ann", "approver"), "approve", "pre-approved")
    entry = only_entry(AuditAction.APPROVE)
    assert entry.detail["ahead"] is True and entry.address is None  # no request: no address


def test_deciding_an_uncertain_effect_from_the_run_page_is_audited(signed_in):
    run, old = one_step_run()
    ledger.open_intent(old, "payment", shared=False, idempotent=False, compensate_path="", has_check=False)
    lose_lease(old)
    run = play(run)
    assert run.status == RunStatus.PAUSED
    effect = Effect.objects.get(run=run, status=EffectStatus.UNCERTAIN)
    operator = signed_in("otto", "operator")
    operator.post(reverse("monitoring:decide_effect", args=[run.pk, effect.pk]), {"decision": "retry"})
    entry = only_entry(AuditAction.DECIDE_EFFECT)
    assert entry.actor_name == "otto" and entry.run_id == run.pk
    assert (entry.target_type, entry.target_id) == ("effect", str(effect.pk))
    assert entry.detail == {"key": "payment", "decision": "retry"}


def test_resetting_a_breaker_is_audited(signed_in, settings):
    settings.RATCHET = {**settings.RATCHET, "CIRCUIT_BREAKERS": {"demo.partner_api": {"failures": 1,
                                                                                      "open_seconds": 60}}}
    breakers.record("demo.partner_api", breakers.configured()["demo.partner_api"], succeeded=False)
    operator = signed_in("otto", "operator")
    operator.post(reverse("monitoring:reset_breaker"), {"handler": "demo.partner_api"})
    entry = only_entry(AuditAction.RESET_BREAKER)
    assert (entry.actor_name, entry.target_type, entry.target_id) == ("otto", "breaker", "demo.partner_api")


def test_creating_and_revoking_a_token_are_audited_without_the_secret(signed_in):
    viewer = signed_in("vera", "viewer")
    page = viewer.post(reverse("api_tokens"), {"name": "ci", "days": "30"}).content.decode()
    token = ApiToken.objects.get(name="ci")
    created = only_entry(AuditAction.TOKEN_CREATED)
    assert created.actor_name == "vera" and created.target_id == str(token.pk)
    assert created.detail["name"] == "ci" and created.detail["expires_at"]
    secret = page.split('id="token-secret">')[1].split("<")[0]
    assert secret.startswith("rt_") and secret not in str(created.detail)
    viewer.post(reverse("api_token_revoke", args=[token.pk]))
    viewer.post(reverse("api_token_revoke", args=[token.pk]))  # already revoked: nothing more
    revoked = only_entry(AuditAction.TOKEN_REVOKED)
    assert revoked.actor_name == "vera" and revoked.detail["owner"] == "vera"


def test_a_failed_sign_in_is_audited_with_the_name_typed_and_the_address(client, person):
    person("ann")
    client.post(reverse("login"), {"username": "ann", "password": "wrong"}, REMOTE_ADDR="203.0.113.9")
    client.post(reverse("login"), {"username": "<b>nobody</b>", "password": "x"})
    entries = list(AuditEntry.objects.filter(action=AuditAction.LOGIN_FAILED).order_by("id"))
    assert [(e.actor_name, e.actor_id, e.address) for e in entries] == [
        ("ann", None, "203.0.113.9"), ("<b>nobody</b>", None, "127.0.0.1")]
    assert client.post(reverse("login"), {"username": "ann", "password": "pw"}).status_code == 302
    assert AuditEntry.objects.count() == 2  # a success is not a failure


def test_actions_through_the_engine_are_audited_with_the_person_and_without_a_person_are_not(person):
    otto = person("otto", "operator")
    run = start_run(reviewed_flow(), user=otto)[0]
    system_run = start_run("reviewed")[0]  # a program without a person (the load generator, a parent run)
    cancel_run(run.pk, otto, "api call")
    assert [(e.action, e.actor_name) for e in AuditEntry.objects.order_by("id")] == [
        ("start", "otto"), ("cancel", "otto")]
    assert not AuditEntry.objects.filter(run=system_run).exists()


def test_a_refused_action_leaves_no_entry(person):
    otto = person("otto", "operator")
    run = start_run(reviewed_flow(), user=otto)[0]
    cancel_run(run.pk, otto)
    with pytest.raises(InvalidTransition):
        cancel_run(run.pk, otto)  # already cancelled
    assert AuditEntry.objects.filter(action=AuditAction.CANCEL).count() == 1


def test_an_audit_entry_cannot_be_changed():
    entry = AuditEntry.objects.create(action=AuditAction.START, actor_name="x")
    entry.actor_name = "y"
    with pytest.raises(Exception, match="append-only"):
        entry.save()
