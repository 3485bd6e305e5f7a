"""Approvals over the API: the caller's pending requests (only those they may decide), paged
with a cursor; a decision, with the engine's refusals as 403 (not an approver, four-eyes),
409 (already decided) and 422 (an outcome or edit the approval does not allow)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import ApprovalRequest, Event, EventKind, Run, RunStatus

from ..engine.test_approvals import play
from .conftest import bearer, call

pytestmark = pytest.mark.django_db(transaction=True)  # run_attempt commits, as a worker does


def refund(**review: Any) -> str:
    publish({"name": "refund", "start_at": "prepare", "states": {
        "prepare": {"type": "task", "handler": "test.answer", "args": {"output": {"amount": 120}},
                    "result_path": "draft", "next": "review"},
        "review": {"type": "approval", "title": "Refund 120", "next": "pay", "reject": "closed", **review},
        "pay": {"type": "task", "handler": "demo.noop", "end": True},
        "closed": {"type": "succeed"},
    }})
    return "refund"


@pytest.fixture
def people(user) -> dict[str, Any]:
    return {"otto": user("operator", name="otto"), "ann": user("approver", name="ann"),
            "vic": user("viewer", name="vic")}


@pytest.fixture
def waiting(redis_conn, sink_path, people):
    """Start a run of refund as ``starter`` and play it to its approval."""
    def start(starter: str = "otto", **review: Any) -> Run:
        run = play(start_run(refund(**review), {}, user=people[starter])[0])
        assert run.status == RunStatus.WAITING
        return run
    return start


def test_an_approver_sees_the_request_and_approves_it(client, people, waiting):
    run = waiting()
    ann = bearer(people["ann"])
    status, page = call(client, "get", "/approvals", ann)
    assert status == 200 and page["next_cursor"] is None and len(page["items"]) == 1
    item = page["items"][0]
    assert (item["run"], item["workflow"], item["state"], item["title"]) == (str(run.pk), "refund", "review",
                                                                           "Refund 120")
    assert item["outcomes"] == ["approve", "reject"] and item["requested_by"] == "otto" and item["four_eyes"]
    status, decided = call(client, "post", f"/approvals/{item['id']}/decide", ann,
                           {"outcome": "approve", "comment": "fine"})
    assert status == 200 and (decided["outcome"], decided["decided_by"], decided["comment"]) == ("approve", "ann",
                                                                                                 "fine")
    assert Event.objects.get(run=run, kind=EventKind.APPROVAL_DECIDED).actor == people["ann"]
    assert play(run).status == RunStatus.SUCCEEDED
    assert call(client, "get", "/approvals", ann)[1]["items"] == []


def test_a_decided_request_is_refused_with_who_decided_it(client, people, waiting):
    waiting()
    ann, request = bearer(people["ann"]), ApprovalRequest.objects.get()
    assert call(client, "post", f"/approvals/{request.pk}/decide", ann, {"outcome": "reject"})[0] == 200
    status, body = call(client, "post", f"/approvals/{request.pk}/decide", ann, {"outcome": "approve"})
    assert status == 409 and body["code"] == "already_decided" and "reject by ann" in body["message"]


def test_four_eyes_an_approver_cannot_approve_their_own_run(client, people, waiting):
    waiting(starter="ann")
    ann, request = bearer(people["ann"]), ApprovalRequest.objects.get()
    assert call(client, "get", "/approvals", ann)[1]["items"] == []  # not in the list either
    status, body = call(client, "post", f"/approvals/{request.pk}/decide", ann, {"outcome": "approve"})
    assert status == 403 and body["code"] == "not_an_approver" and "four-eyes" in body["message"]
    request.refresh_from_db()
    assert request.is_pending


def test_a_viewer_sees_nothing_to_decide_and_may_not_decide(client, people, waiting):
    waiting()
    vic, request = bearer(people["vic"]), ApprovalRequest.objects.get()
    assert call(client, "get", "/approvals", vic) == (200, {"items": [], "next_cursor": None})
    status, body = call(client, "post", f"/approvals/{request.pk}/decide", vic, {"outcome": "approve"})
    assert status == 403 and "orchestrator.decide_approval" in body["message"]
    assert call(client, "get", "/approvals")[0] == 401
    assert call(client, "post", f"/approvals/{request.pk}/decide", None, {"outcome": "approve"})[0] == 401


@pytest.mark.parametrize("payload, status, code, field", [
    ({"outcome": "maybe"}, 422, "invalid", "outcome"),
    ({"outcome": ""}, 422, "invalid", "outcome"),
    ({"outcome": "approve", "data": {"amount": 1}}, 422, "invalid", "data"),  # nothing is editable
    ({"comment": "no outcome"}, 422, "invalid", "outcome"),
])
def test_a_decision_the_approval_does_not_allow_names_the_field(client, people, waiting, payload, status, code, field):
    waiting()
    request = ApprovalRequest.objects.get()
    got, body = call(client, "post", f"/approvals/{request.pk}/decide", bearer(people["ann"]), payload)
    assert (got, body["code"], body["field"]) == (status, code, field), body
    request.refresh_from_db()
    assert request.is_pending


def test_an_unknown_request_is_404(client, people):
    status, body = call(client, "post", "/approvals/999999/decide", bearer(people["ann"]), {"outcome": "approve"})
    assert status == 404 and body["code"] == "approval_not_found"


def test_edited_data_replaces_the_editable_path(client, people, waiting):
    run = waiting(editable="draft.amount")
    request = ApprovalRequest.objects.get()
    assert call(client, "get", "/approvals", bearer(people["ann"]))[1]["items"][0]["editable"] == "draft.amount"
    status, body = call(client, "post", f"/approvals/{request.pk}/decide", bearer(people["ann"]),
                        {"outcome": "approve", "data": 100})
    assert status == 200 and body["edited"] is True
    assert play(run).context["draft"] == {"amount": 100}


def test_pending_approvals_page_with_a_cursor(client, people, waiting):
    runs = [waiting() for _ in range(3)]
    ann, seen, cursor = bearer(people["ann"]), [], None
    while True:
        status, page = call(client, "get", "/approvals?limit=2" + (f"&cursor={cursor}" if cursor else ""), ann)
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["run"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [str(run.pk) for run in runs]  # oldest first, each once
    assert call(client, "get", "/approvals?workflow=other", ann)[1]["items"] == []
    status, body = call(client, "get", "/approvals?cursor=garbage", ann)
    assert status == 422 and body["field"] == "cursor"
    status, body = call(client, "get", "/approvals?limit=0", ann)
    assert status == 422 and body["field"] == "limit"
