"""The approvals inbox and the run page's approvals panel, through the Django test client: who
sees what, decisions made by the engine (refusals answered 409 with its reason), edits checked
before anything is decided, bulk decisions, the navigation's badge, escaping, and flat
statement counts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestrator.engine import approvals
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import ApprovalRequest, ApprovalStatus, Event, EventKind, Run, RunStatus
from orchestrator.roles import ensure_role_groups

from ..engine.test_approvals import play, refund_flow
from ..workflows import task

pytestmark = pytest.mark.django_db(transaction=True)

INBOX = reverse("monitoring:approvals")
BADGE = reverse("monitoring:approvals_badge")
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


@pytest.fixture
def people(django_user_model) -> dict[str, Any]:
    """A requester (also in finance), two finance approvers, a manager, an outsider; all may see
    runs (the viewer role)."""
    finance, managers = Group.objects.create(name="finance"), Group.objects.create(name="managers")
    made = {name: django_user_model.objects.create_user(name, password="pw")
            for name in ("requester", "ann", "bob", "manager", "outsider")}
    for user in made.values():
        user.groups.add(ensure_role_groups()["viewer"])
    for name in ("requester", "ann", "bob"):
        made[name].groups.add(finance)
    made["manager"].groups.add(managers)
    return made


def as_user(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def waiting(people: dict[str, Any], flow: str | None = None, data: dict[str, Any] | None = None,
            **review: Any) -> tuple[Run, ApprovalRequest]:
    """A run of the refund flow, started by the requester, waiting for its review."""
    run = play(start_run(flow or refund_flow(**review), data or {}, user=people["requester"])[0])
    assert run.status == RunStatus.WAITING
    return run, ApprovalRequest.objects.get(run=run, status=ApprovalStatus.PENDING)


def decide_url(request: ApprovalRequest) -> str:
    return reverse("monitoring:decide_approval", args=[request.pk])


def text_of(response: Any) -> str:
    return response.content.decode()


# --- who sees what ------------------------------------------------------------------------------------------


def test_the_inbox_lists_only_what_the_user_may_decide(people):
    _, theirs = waiting(people)
    publish({"name": "managed", "start_at": "review", "states": {
        "review": {"type": "approval", "title": "Managers only", "approvers": {"groups": ["managers"]},
                   "next": "done"}, "done": {"type": "succeed"}}})
    _, managed = waiting(people, "managed")
    text = text_of(as_user(people["ann"]).get(INBOX))
    assert f'id="approval-{theirs.pk}"' in text and "Refund 120" in text
    assert f'id="approval-{managed.pk}"' not in text and "Managers only" not in text
    assert "bob" in text and "requester" not in text.split(f'id="approval-{theirs.pk}"')[1]  # who else, four-eyes
    assert "approve" in text and "pay" in text and "closed" in text and "asked" in text  # the transitions
    manager = text_of(as_user(people["manager"]).get(INBOX))
    assert "Managers only" in manager and "Refund 120" not in manager
    empty = as_user(people["outsider"]).get(INBOX)
    assert empty.status_code == 200 and "Nothing to decide" in text_of(empty) and "/workflows/refund/" in text_of(empty)


def test_the_requester_does_not_see_theirs_and_is_refused_if_they_post(people):
    run, request = waiting(people)
    client = as_user(people["requester"])
    assert f'id="approval-{request.pk}"' not in text_of(client.get(INBOX))
    response = client.post(decide_url(request), {"outcome": "approve"}, **HTMX)
    assert response.status_code == 409 and "four-eyes" in text_of(response)
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and Run.objects.get(pk=run.pk).status == RunStatus.WAITING


def test_an_outsider_is_refused_with_the_message_and_nothing_changes(people):
    _, request = waiting(people)
    client = as_user(people["outsider"])
    response = client.post(decide_url(request), {"outcome": "approve", "next": INBOX}, follow=True)
    assert "Refused: you are not among those who may decide (group finance)" in text_of(response)
    json = client.post(decide_url(request), {"outcome": "approve"}, HTTP_ACCEPT="application/json")
    assert json.status_code == 409 and "not among those who may decide" in json.json()["message"]
    claim = client.post(reverse("monitoring:claim_approval", args=[request.pk]), **HTMX)
    assert claim.status_code == 409 and "not among those" in text_of(claim)
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and request.claimed_by is None


def test_pages_need_login_and_actions_need_post(client, people):
    _, request = waiting(people)
    for url in (INBOX, BADGE):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response.url
    response = client.post(decide_url(request), {"outcome": "approve"})
    assert response.status_code == 302 and "/login/" in response.url
    ann = as_user(people["ann"])
    assert ann.get(decide_url(request)).status_code == 405
    assert ann.get(reverse("monitoring:claim_approval", args=[request.pk])).status_code == 405
    assert ann.get(reverse("monitoring:decide_approvals")).status_code == 405
    assert ann.post(reverse("monitoring:decide_approval", args=[request.pk + 999]), {"outcome": "approve"}
                    ).status_code == 404


# --- deciding --------------------------------------------------------------------------------------------------


def test_approving_with_a_comment_moves_the_run_on_and_names_who(people):
    run, request = waiting(people)
    response = as_user(people["ann"]).post(decide_url(request), {"outcome": "approve", "comment": "fine by me",
                                                                  "next": INBOX})
    assert response.status_code == 302 and response.url == INBOX
    run = play(run)
    assert run.status == RunStatus.SUCCEEDED
    decided = Event.objects.get(run=run, kind=EventKind.APPROVAL_DECIDED)
    assert decided.actor == people["ann"] and decided.data["comment"] == "fine by me"
    assert run.context["review"]["comment"] == "fine by me"


def test_a_labelled_outcome_over_htmx_answers_the_card_and_the_badge(people):
    run, request = waiting(people)
    response = as_user(people["ann"]).post(decide_url(request), {"outcome": "ask_more"}, **HTMX)
    text = text_of(response)
    assert response.status_code == 200 and f'id="approval-{request.pk}"' in text
    assert "ask_more</strong> by ann" in text and 'hx-swap-oob="innerHTML"' in text
    assert f'id="decide-{request.pk}"' not in text  # no form once decided
    assert play(run).status == RunStatus.SUCCEEDED
    assert Event.objects.filter(run=run, kind=EventKind.RUN_SUCCEEDED, state_name="asked").exists()


def test_a_second_decision_answers_409_naming_who_decided(people):
    _, request = waiting(people)
    assert as_user(people["ann"]).post(decide_url(request), {"outcome": "approve"}, **HTMX).status_code == 200
    response = as_user(people["bob"]).post(decide_url(request), {"outcome": "reject"}, **HTMX)
    assert response.status_code == 409
    assert re.search(r"Refused: already decided: approve by ann at \d{4}-", text_of(response))
    request.refresh_from_db()
    assert request.outcome == "approve" and request.decided_by == people["ann"]


def test_a_malformed_edit_answers_400_keeps_the_text_and_decides_nothing(people):
    _, request = waiting(people, editable="draft")
    typed = '{"amount": 90,, "note": "<b>x</b>"'
    client = as_user(people["ann"])
    response = client.post(decide_url(request), {"outcome": "approve", "comment": "halved", "data": typed}, **HTMX)
    text = text_of(response)
    assert response.status_code == 400 and "Not decided: the edited draft is not valid JSON" in text
    assert '{&quot;amount&quot;: 90,, &quot;note&quot;: &quot;&lt;b&gt;x&lt;/b&gt;&quot;' in text
    assert ">halved</textarea>" in text
    page = client.post(decide_url(request), {"outcome": "approve", "comment": "halved", "data": typed})
    assert page.status_code == 400 and "<h1>Decide" in text_of(page) and "&lt;b&gt;x&lt;/b&gt;" in text_of(page)
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING


def test_an_edit_replaces_the_value_and_an_untouched_one_is_no_edit(people):
    run, request = waiting(people, editable="draft")
    shown = text_of(as_user(people["ann"]).get(INBOX))
    assert '{\n  &quot;amount&quot;: 120\n}</textarea>' in shown  # prefilled, pretty-printed
    as_user(people["ann"]).post(decide_url(request), {"outcome": "approve", "data": '{\r\n  "amount": 90\r\n}'})
    request.refresh_from_db()
    assert request.edited and request.edited_data == {"amount": 90}
    assert play(run).context["draft"] == {"amount": 90}
    other, untouched = waiting(people, "refund")
    as_user(people["bob"]).post(decide_url(untouched), {"outcome": "approve", "data": '{\r\n  "amount": 120\r\n}'})
    untouched.refresh_from_db()
    assert untouched.status == ApprovalStatus.DECIDED and not untouched.edited


def test_claim_and_release_show_who_looks(people):
    _, request = waiting(people)
    claim = reverse("monitoring:claim_approval", args=[request.pk])
    ann, bob = as_user(people["ann"]), as_user(people["bob"])
    text = text_of(ann.post(claim, **HTMX))
    assert "Claimed: others see you are looking at it." in text and "by you" in text and "Release" in text
    assert "by ann since" in text_of(bob.get(INBOX))
    refused = bob.post(claim, **HTMX)
    assert refused.status_code == 409 and "ann is looking at it since" in text_of(refused)
    assert "claimed by me" in text_of(ann.get(INBOX, {"mine": "1"})).lower()
    assert f'id="approval-{request.pk}"' in text_of(ann.get(INBOX, {"mine": "1"}))
    assert f'id="approval-{request.pk}"' not in text_of(bob.get(INBOX, {"mine": "1"}))
    ann.post(claim, {"release": "1"}, **HTMX)
    request.refresh_from_db()
    assert request.claimed_by is None


# --- bulk ---------------------------------------------------------------------------------------------------------


def test_bulk_approve_confirms_the_count_then_reports_done_and_refused(people):
    made = [waiting(people, refund_flow() if i == 0 else "refund") for i in range(3)]
    ids = [str(request.pk) for _, request in made]
    approvals.decide(made[1][1].pk, people["bob"], "reject", "no")
    ann = as_user(people["ann"])
    url = reverse("monitoring:decide_approvals")
    confirm = ann.post(url, {"ids": ids, "outcome": "approve", "comment": "batch"})
    assert confirm.status_code == 200 and "Approve 3 requests?" in text_of(confirm)
    assert ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).count() == 2  # nothing decided yet
    done = ann.post(url, {"ids": ids, "outcome": "approve", "comment": "batch", "confirmed": "1"}, follow=True)
    text = text_of(done)
    assert "2 requests approved." in text
    assert f"Request #{made[1][1].pk} refused: already decided: reject by bob at" in text
    assert list(ApprovalRequest.objects.filter(decided_by=people["ann"]).values_list("comment", flat=True)) == [
        "batch", "batch"]
    assert ann.post(url, {"outcome": "approve"}, follow=True).content.decode().count("Select at least one") == 1


# --- the badge, filters, history -----------------------------------------------------------------------------------


def test_the_badge_counts_in_one_statement(people):
    waiting(people)
    waiting(people, "refund")
    ann = as_user(people["ann"])
    ann.get(INBOX)  # the session is warm
    with CaptureQueriesContext(connection) as queries:
        response = ann.get(BADGE)
    assert '<span class="nav-count-n">2</span>' in text_of(response)
    touching = [q["sql"] for q in queries.captured_queries if "orchestrator_approvalrequest" in q["sql"]]
    assert len(touching) == 1 and touching[0].startswith("SELECT COUNT(")
    assert text_of(as_user(people["outsider"]).get(BADGE)) == ""
    assert text_of(as_user(people["requester"]).get(BADGE)) == ""  # four-eyes: their own runs


def test_the_navigation_has_the_approvals_link_and_the_approver_role(people):
    approver = people["outsider"]
    approver.user_permissions.add(Permission.objects.get(codename="decide_approval"))
    text = text_of(as_user(approver).get(INBOX))
    assert f'href="{INBOX}"' in text and f'hx-get="{BADGE}"' in text and "· approver" in text
    assert "· viewer" in text_of(as_user(people["manager"]).get(INBOX))


def test_urgent_and_workflow_filters_and_the_order(people):
    _, later = waiting(people, due_seconds=3600)
    _, sooner = waiting(people, "refund")
    ApprovalRequest.objects.filter(pk=sooner.pk).update(due_at=timezone.now() - timedelta(minutes=3))
    _, undated = waiting(people, refund_flow("refund_plain"))
    ann = as_user(people["ann"])
    text = text_of(ann.get(INBOX))
    order = [text.index(f'id="approval-{r.pk}"') for r in (sooner, later, undated)]
    assert order == sorted(order), "oldest due first, no due time last"
    assert "overdue by 3 min" in text and "⚠ Overdue" in text and "due in 59 min" in text
    urgent = text_of(ann.get(INBOX, {"urgent": "1"}))
    assert f'id="approval-{sooner.pk}"' in urgent and f'id="approval-{later.pk}"' not in urgent
    ApprovalRequest.objects.filter(pk=undated.pk).update(escalation_level=1)
    escalated = text_of(ann.get(INBOX, {"urgent": "1"}))
    assert f'id="approval-{undated.pk}"' in escalated and "Escalated (level 1)" in escalated
    plain = text_of(ann.get(INBOX, {"workflow": "refund_plain"}))
    assert f'id="approval-{undated.pk}"' in plain and f'id="approval-{later.pk}"' not in plain
    fragment = ann.get(INBOX, {"workflow": "nope"}, HTTP_HX_TARGET="approvals-main", **HTMX)
    assert text_of(fragment).lstrip().startswith('<div id="approvals-main">') and "<html" not in text_of(fragment)
    assert "matches these filters" in text_of(fragment)


def test_the_decided_history_filters_by_outcome_workflow_and_person(people):
    _, first = waiting(people)
    _, second = waiting(people, "refund")
    approvals.decide(first.pk, people["ann"], "approve", "ok")
    approvals.decide(second.pk, people["bob"], "reject", "no")
    viewer = as_user(people["outsider"])
    text = text_of(viewer.get(INBOX, {"tab": "decided"}))
    assert text.index(f'id="decided-{second.pk}"') < text.index(f'id="decided-{first.pk}"')  # newest first
    only = text_of(viewer.get(INBOX, {"tab": "decided", "outcome": "reject"}))
    assert f'id="decided-{second.pk}"' in only and f'id="decided-{first.pk}"' not in only
    mine = text_of(as_user(people["ann"]).get(INBOX, {"tab": "decided", "mine": "1"}))
    assert f'id="decided-{first.pk}"' in mine and f'id="decided-{second.pk}"' not in mine
    assert "No decision matches" in text_of(viewer.get(INBOX, {"tab": "decided", "workflow": "nope"}))


def test_the_decided_history_pages_by_cursor(people, monkeypatch):
    from monitoring import inbox

    monkeypatch.setattr(inbox, "HISTORY_PAGE", 2)
    made = [waiting(people, refund_flow() if i == 0 else "refund")[1] for i in range(3)]
    for request in made:
        approvals.decide(request.pk, people["ann"], "approve")
    viewer = as_user(people["outsider"])
    text = text_of(viewer.get(INBOX, {"tab": "decided"}))
    assert text.count('<tr id="decided-') == 2 and "Older decisions" in text
    older = re.search(r'href="([^"]*before=\d+)"', text).group(1).replace("&amp;", "&")
    rest = text_of(viewer.get(older))
    assert rest.count('<tr id="decided-') == 1 and f'id="decided-{made[0].pk}"' in rest


# --- escaping and statement counts ----------------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere(people):
    publish({"name": "nasty", "start_at": "review", "states": {
        "review": {"type": "approval", "title": "<script>alert('title')</script>",
                   "approvers": {"groups": ["finance"]}, "next": "done"},
        "done": {"type": "succeed"}}})
    run, request = waiting(people, "nasty", {"note": "<script>alert('context')</script>"})
    ann = as_user(people["ann"])
    inbox_text = text_of(ann.get(INBOX))
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in inbox_text
    assert "&lt;script&gt;alert(&#x27;context&#x27;)&lt;/script&gt;" in inbox_text
    ann.post(decide_url(request), {"outcome": "approve", "comment": "<script>alert('comment')</script>"})
    for text in (text_of(ann.get(INBOX, {"tab": "decided"})),
                 text_of(ann.get(reverse("monitoring:run_detail", args=[run.pk])))):
        assert "&lt;script&gt;alert(&#x27;comment&#x27;)&lt;/script&gt;" in text
        assert "<script>alert(" not in text


def inbox_statements(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(INBOX).status_code == 200
    return len(queries)


def test_the_inbox_costs_the_same_statements_for_1_and_20_requests(people):
    ann = as_user(people["ann"])
    waiting(people)
    one = inbox_statements(ann)
    for _ in range(19):
        waiting(people, "refund")
    twenty = inbox_statements(ann)
    assert text_of(ann.get(INBOX)).count('class="approval-card') == 20
    assert one == twenty <= 14, (one, twenty)


# --- the run page -------------------------------------------------------------------------------------------------


def test_the_run_page_shows_the_approvals_panel(people):
    run, request = waiting(people, editable="draft")
    url = reverse("monitoring:run_detail", args=[run.pk])
    ann = text_of(as_user(people["ann"]).get(url))
    assert 'aria-label="Approvals"' in ann and "Refund 120" in ann
    assert f'id="decide-{request.pk}"' in ann and 'hx-preserve="true"' in ann and 'name="view" value="run"' in ann
    outsider = text_of(as_user(people["outsider"]).get(url))
    assert "You may not decide this: you are not among those" in outsider
    assert f'id="decide-{request.pk}"' not in outsider
    requester = text_of(as_user(people["requester"]).get(url))
    assert "You may not decide this: four-eyes" in requester and f'id="decide-{request.pk}"' in requester
    response = as_user(people["ann"]).post(decide_url(request), {"outcome": "approve", "comment": "ok", "view": "run"},
                                           **HTMX)
    assert "run " + str(run.pk)[:8] not in text_of(response)  # the run page's card: no link to itself
    live = text_of(as_user(people["outsider"]).get(url, {"fragment": "live"}, **HTMX))
    assert "approve</strong> by ann" in live and "ok</blockquote>" in live


def test_the_run_page_panel_costs_the_same_for_one_or_three_requests(people):
    one, _ = waiting(people)
    publish({"name": "trio", "start_at": "all", "states": {"all": {"type": "parallel", "end": True, "branches": {
        name: {"start_at": f"{name}_review", "states": {f"{name}_review": {
            "type": "approval", "approvers": {"groups": ["finance"]}, "end": True}}} for name in "abc"}}}})
    trio = play(start_run("trio", user=people["requester"])[0])
    assert trio.approvals.count() == 3
    ann, counts = as_user(people["ann"]), []
    for run in (one, trio):
        with CaptureQueriesContext(connection) as queries:
            text = text_of(ann.get(reverse("monitoring:run_detail", args=[run.pk])))
        counts.append(len([q for q in queries.captured_queries if "approvalrequest" in q["sql"]]))
        assert 'aria-label="Approvals"' in text
    assert counts[0] == counts[1] == 4, counts


def test_a_run_without_approvals_has_no_panel(people):
    publish({"name": "plain", "start_at": "work", "states": {"work": task("demo.noop", end=True)}})
    run = play(start_run("plain", user=people["requester"])[0])
    assert 'aria-label="Approvals"' not in text_of(as_user(people["ann"]).get(
        reverse("monitoring:run_detail", args=[run.pk])))
