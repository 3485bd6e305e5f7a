"""The OpenAI-compatible provider on real workers, against a local server speaking the
protocol: tool calls, routes, usage and cost, retries of an unavailable model, refusals,
and a worker SIGKILLed during an agent's tool loop (each answer is charged once)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, FailureMode, ModelCall, RunStatus

from ..conftest import wait_for
from ..openai_server import ChatServer
from ..workflows import finished

pytestmark = [pytest.mark.integration]
PRICE = {"test-model": [1.0, 2.0]}  # USD per million input / output tokens


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as chat:
        yield chat


@pytest.fixture
def model_workers(workers, server):
    env = {"RATCHET_OPENAI_BASE_URL": server.base_url, "RATCHET_OPENAI_API_KEY": "sk-test",
           "RATCHET_OPENAI_MODEL": "test-model", "RATCHET_MODEL_PRICES": json.dumps(PRICE)}
    return lambda count=1: workers(count, extra_env=env)


def publish_agent(name: str, tool: str = "test.add", **fields: Any) -> str:
    publish({"name": name, "start_at": "assistant", "budgets": {"max_steps": 20}, "states": {
        "assistant": {"type": "agent", "provider": "openai", "instructions": "Add the pairs.", "tools": [tool],
                      "routes": ["report", "escalate"], **fields},
        "report": {"type": "succeed"},
        "escalate": {"type": "fail", "error": "Escalated"},
    }})
    return name


def test_an_agent_uses_tools_and_routes_through_an_openai_compatible_server(model_workers, server):
    publish_agent("openai_agent")
    model_workers(1)
    run = finished(start_run("openai_agent", {"pairs": [[2, 3], [4, 5]], "route": "report"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert len(server.requests) == 3  # two tool turns, then the answer
    first, last = server.requests[0], server.requests[-1]
    assert first["model"] == "test-model"  # from settings: the state names none
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert {t["function"]["name"] for t in first["tools"]} == {"test.add", "choose_next_state"}
    assert first["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert first["messages"][0] == {"role": "system", "content": first["messages"][0]["content"]}
    assert "choose_next_state" in first["messages"][0]["content"]
    tool_messages = [m for m in last["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], json.loads(m["content"])) for m in tool_messages] == [
        ("call_0_0", {"sum": 5}), ("call_1_0", {"sum": 9})]
    calls = list(ModelCall.objects.filter(run=run).order_by("id"))
    assert [c.tokens_in for c in calls] == [100, 110, 120] and all(c.tokens_out == 20 for c in calls)
    assert run.tokens_used == 100 + 110 + 120 + 60
    assert run.cost_used == Decimal("0.000450")  # 330 in at $1/M + 60 out at $2/M


def test_a_refused_route_is_not_followed(model_workers, server):
    publish_agent("openai_refused")
    model_workers(1)
    run = finished(start_run("openai_refused", {"route": "delete_account"})[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "RouteRefused"
    assert "'delete_account'" in run.error["message"]


def test_an_unavailable_model_is_retried_by_the_states_retry_policy(model_workers, server):
    server.replies.append((503, {"error": {"message": "overloaded"}}))
    publish_agent("openai_retry", retry=[{"errors": ["ModelUnavailable"], "max_attempts": 2, "interval_seconds": 0}])
    model_workers(1)
    run = finished(start_run("openai_retry", {"route": "report"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    first = run.attempts.order_by("id").first()
    assert first.status == AttemptStatus.FAILED and first.error["type"] == "ModelUnavailable"
    assert "503" in first.error["message"] and len(server.requests) == 2


def test_a_request_the_server_refuses_fails_with_its_message(model_workers, server):
    server.replies.append((400, {"error": {"message": "model 'test-model' does not exist"}}))
    publish_agent("openai_refused_request", retry=[{"errors": ["ModelUnavailable"], "max_attempts": 3}])
    model_workers(1)
    run = finished(start_run("openai_refused_request", {"route": "report"})[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "ModelRequestRefused"
    assert "does not exist" in run.error["message"] and len(server.requests) == 1


def test_tool_arguments_that_are_not_json_are_an_invalid_answer(model_workers, server):
    server.replies.append((200, {"model": "test-model", "choices": [{"message": {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "test.add", "arguments": "{a: 1"}}]}}]}))
    publish_agent("openai_bad_arguments")
    model_workers(1)
    run = finished(start_run("openai_bad_arguments", {"route": "report"})[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "ModelAnswerInvalid"
    assert "not JSON" in run.error["message"]


def test_a_cost_the_server_reports_is_used_as_it_is(model_workers, server):
    server.usage_cost = 0.25
    publish_agent("openai_reported_cost")
    model_workers(1)
    run = finished(start_run("openai_reported_cost", {"route": "report"})[0])
    assert run.status == RunStatus.SUCCEEDED and run.cost_used == Decimal("0.25")


def test_a_worker_killed_in_the_tool_loop_resumes_and_each_answer_is_charged_once(model_workers, server):
    publish_agent("openai_killed", tool="test.slow_add")
    pool = model_workers(1)
    run, _ = start_run("openai_killed", {"pairs": [[1, 2], [3, 4]], "route": "report"})
    wait_for(lambda: run.attempts.filter(state_name="assistant", status=AttemptStatus.RUNNING,
                                         sequence__gt=1).exists(), what="the second turn running its tool")
    pool.kill(pool.processes[0])
    model_workers(1)
    run = finished(run, timeout=60)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.resume_count >= 1
    calls = ModelCall.objects.filter(run=run)
    assert calls.count() == len(server.requests) == 3  # no turn asked twice
    assert run.tokens_used == sum(c.tokens for c in calls)
    assert run.failure_mode == "" and FailureMode.LOST_PROGRESS not in run.attempts.values_list(
        "failure_mode", flat=True)
