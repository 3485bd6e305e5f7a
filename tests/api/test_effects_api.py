"""Uncertain effects over the API: listed (paged with a cursor) for anyone who may view runs,
decided by an operator (``orchestrator.change_effect``), which resumes the run; a decision
that does not fit is refused naming the field, one made twice is a conflict."""

from __future__ import annotations

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.models import Effect, EffectStatus, Event, EventKind, Run, RunStatus

from ..engine.test_approvals import play
from ..workflows import chain, task
from .conftest import bearer, call

pytestmark = pytest.mark.django_db(transaction=True)  # run_attempt commits, as a worker does


@pytest.fixture
def paused(redis_conn, sink_path):
    """Start runs whose only step pauses on an uncertain effect ("payment")."""
    chain("swallower", ("pay", task("test.swallows_uncertain")))

    def start() -> Run:
        run = play(start_run("swallower")[0])
        assert run.status == RunStatus.PAUSED
        return run
    return start


@pytest.fixture
def operator(user):
    return bearer(user("operator", name="otto"))


def test_an_operator_lists_an_uncertain_effect_and_decides_it_happened(client, paused, operator):
    run = paused()
    status, page = call(client, "get", "/effects", operator)
    assert status == 200 and page["next_cursor"] is None
    [item] = page["items"]
    assert (item["run"], item["workflow"], item["key"], item["state"], item["status"]) == (
        str(run.pk), "swallower", "payment", "pay", "uncertain")
    assert item["decisions"] == ["happened", "retry", "compensate"] and item["error"]["type"] == "TimeoutError"
    assert call(client, "get", f"/runs/{run.pk}", operator)[1]["effects"][0]["id"] == item["id"]
    status, body = call(client, "post", f"/effects/{item['id']}/decide", operator,
                        {"decision": "happened", "result": {"receipt": 7}})
    assert status == 200 and (body["decision"], body["decided_by"], body["status"]) == ("happened", "otto",
                                                                                      "confirmed")
    assert Event.objects.filter(run=run, actor__username="otto").exists()
    assert play(run).status == RunStatus.SUCCEEDED
    assert call(client, "get", "/effects", operator)[1]["items"] == []


def test_deciding_twice_is_a_conflict(client, paused, operator):
    paused()
    effect = Effect.objects.get()
    assert call(client, "post", f"/effects/{effect.pk}/decide", operator, {"decision": "retry"})[0] == 200
    status, body = call(client, "post", f"/effects/{effect.pk}/decide", operator, {"decision": "retry"})
    assert status == 409 and body["code"] == "invalid_transition" and "nothing to decide" in body["message"]


@pytest.mark.parametrize("payload", [{"decision": "accept"}, {"decision": "explode"}, {}])
def test_a_decision_that_does_not_fit_names_the_field(client, paused, operator, payload):
    paused()
    effect = Effect.objects.get()
    status, body = call(client, "post", f"/effects/{effect.pk}/decide", operator, payload)
    assert status == 422 and body["field"] == "decision", body
    assert Effect.objects.get().status == EffectStatus.UNCERTAIN


def test_a_viewer_lists_but_may_not_decide(client, paused, user):
    paused()
    viewer, effect = bearer(user("viewer", name="vic")), Effect.objects.get()
    assert len(call(client, "get", "/effects", viewer)[1]["items"]) == 1
    status, body = call(client, "post", f"/effects/{effect.pk}/decide", viewer, {"decision": "retry"})
    assert status == 403 and "orchestrator.change_effect" in body["message"]
    assert call(client, "get", "/effects")[0] == 401
    assert call(client, "post", f"/effects/{effect.pk}/decide", None, {"decision": "retry"})[0] == 401
    assert not Event.objects.filter(kind=EventKind.RUN_RESUMED).exists()


def test_an_unknown_effect_is_404(client, operator):
    status, body = call(client, "post", "/effects/999999/decide", operator, {"decision": "retry"})
    assert status == 404 and body["code"] == "effect_not_found"


def test_effects_page_with_a_cursor_and_filters(client, paused, operator):
    runs = [paused() for _ in range(3)]
    seen, cursor = [], None
    while True:
        status, page = call(client, "get", "/effects?limit=2" + (f"&cursor={cursor}" if cursor else ""), operator)
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["run"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [str(run.pk) for run in runs]
    assert call(client, "get", "/effects?status=compensation_failed", operator)[1]["items"] == []
    assert call(client, "get", "/effects?workflow=other", operator)[1]["items"] == []
    for query, field in (("cursor=garbage", "cursor"), ("status=confirmed", "status"), ("limit=101", "limit")):
        status, body = call(client, "get", f"/effects?{query}", operator)
        assert (status, body["field"]) == (422, field), query
