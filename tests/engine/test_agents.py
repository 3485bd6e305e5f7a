"""Agent states, in-process, on the offline provider: model-driven routing (a pick outside
the definition's routes is refused, never followed), the tool loop as checkpointed steps,
answers replayed (not paid again) after a lost worker, typed contracts, handoffs under the
delegation depth cap, and budgets with defaults in settings."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.demo import sink
from orchestrator.engine.agent import run_agent
from orchestrator.engine.context import StepContext
from orchestrator.engine.runs import start_run
from orchestrator.engine.transitions import claim_attempt
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    AttemptStatus,
    Event,
    EventKind,
    FailureMode,
    ModelCall,
    Run,
    RunStatus,
    StepAttempt,
)

from ..workflows import task
from .test_ledger import lose_lease
from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def agent(model: str, **fields: Any) -> dict[str, Any]:
    return {"type": "agent", "provider": "offline", "model": model, **fields}


def answer(output: Any) -> dict[str, Any]:
    return task("test.answer", args={"output": output}, end=True)


def routed(name: str, **top: Any) -> str:
    publish({"name": name, "start_at": "triage", **top, "states": {
        # "secret" is a state of the workflow (reached by an error path), not a route of triage.
        "triage": agent("test.router", routes=["billing", "technical"],
                        catch=[{"errors": ["NeverRaised"], "next": "secret"}]),
        "billing": answer("billing"),
        "technical": answer("technical"),
        "secret": answer("secret"),
    }})
    return name


def kinds(run: Run) -> list[str]:
    return list(Event.objects.filter(run=run).order_by("id").values_list("kind", flat=True))


# --- routing ----------------------------------------------------------------------------------------


def test_an_agent_routes_to_the_state_the_model_picks_and_pays_for_its_answer():
    run = drain(start_run(routed("route_ok"), {"route": "technical"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == "technical"
    (call,) = ModelCall.objects.filter(run=run)
    assert call.tokens > 0 and call.cost > 0  # offline answers are priced from MODEL_PRICES
    assert run.tokens_used == call.tokens and run.cost_used == call.cost
    triage = StepAttempt.objects.get(run=run, state_name="triage")
    assert (triage.tokens, triage.cost) == (call.tokens, call.cost)
    assert triage.output["route"] == "technical"
    route = Event.objects.get(run=run, kind=EventKind.ROUTE_TAKEN)
    assert route.data["next"] == "technical"


def test_a_pick_outside_the_routes_is_refused_and_never_followed():
    run = drain(start_run(routed("route_refused"), {"route": "secret"})[0])
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "RouteRefused"
    assert "'secret'" in run.error["message"] and "billing, technical" in run.error["message"]
    assert not StepAttempt.objects.filter(run=run, state_name="secret").exists()
    assert EventKind.ROUTE_TAKEN not in kinds(run)


def test_a_refused_answer_is_discarded_so_a_retry_asks_the_model_again():
    name = "route_retried"
    publish({"name": name, "start_at": "triage", "states": {
        "triage": agent("test.router", routes=["billing"], retry=[{"max_attempts": 3, "interval_seconds": 0}]),
        "billing": answer("billing"),
    }})
    run = drain(start_run(name, {"route": "nowhere", "tag": "retried"})[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "RouteRefused"
    assert sink.deliveries("model-retried") == 3  # asked once per attempt, never replayed
    assert ModelCall.objects.filter(run=run, discarded=True).count() == 3
    assert run.tokens_used == sum(c.tokens for c in ModelCall.objects.filter(run=run))


def test_an_answer_with_no_pick_is_refused_when_the_state_routes():
    run = drain(start_run(routed("route_missing"), {"tag": "none"})[0])
    assert run.status == RunStatus.FAILED
    assert "picked no next state" in run.error["message"]


# --- tools --------------------------------------------------------------------------------------------


def tool_agent(name: str, model: str = "test.adder", max_steps: int = 20) -> str:
    publish({"name": name, "start_at": "assistant", "budgets": {"max_steps": max_steps}, "states": {
        "assistant": agent(model, tools=["test.add"], end=True),
    }})
    return name


def test_an_agent_calls_its_tools_in_a_loop_one_checkpointed_turn_per_step():
    run = drain(start_run(tool_agent("adder"), {"pairs": [[2, 3], [4, 5]]})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output["data"] == {"total": 14}
    visits = StepAttempt.objects.filter(run=run, state_name="assistant").order_by("id")
    assert [a.status for a in visits] == [AttemptStatus.SUCCEEDED] * 3
    assert [a.output["turn"] for a in visits] == [1, 2, 3]
    assert sink.deliveries(f"tool-add-{run.pk}-2-3") == 1 and sink.deliveries(f"tool-add-{run.pk}-4-5") == 1
    assert ModelCall.objects.filter(run=run).count() == 3
    tool_messages = [m for m in run.output["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ['{"sum": 5}', '{"sum": 9}']


def test_the_tool_loop_is_bounded_by_the_step_budget():
    run = drain(start_run(tool_agent("adder_bounded", max_steps=2), {"pairs": [[1, 1], [2, 2], [3, 3]]})[0])
    assert run.status == RunStatus.FAILED
    assert run.failure_mode == FailureMode.COST_EXPLOSION
    assert "step budget of 2" in run.error["message"]


def test_an_unknown_tool_or_bad_arguments_are_told_to_the_model_not_run():
    run = drain(start_run(tool_agent("wrong_tool", model="test.wrong_tool"), {})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    errors = run.output["data"]["errors"]
    assert "no tool named 'delete_everything'" in errors[0]
    assert "arguments of test.add are invalid" in errors[1] and "'b' is a required property" in errors[1]


# --- answers are checkpointed ------------------------------------------------------------------------------


def test_a_step_resumed_after_its_worker_died_replays_the_answer_instead_of_paying_again():
    run = start_run(routed("replayed"), {"route": "billing", "tag": "replayed"})[0]
    first = run.attempts.get(state_name="triage")
    claim = claim_attempt(first.pk, "w1")
    run_agent(StepContext(claim), claim.state)  # the model answered; the worker dies before its checkpoint
    lose_lease(claim)
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == "billing"
    assert sink.deliveries("model-replayed") == 1  # the model was asked once
    (call,) = ModelCall.objects.filter(run=run)
    assert call.attempt_id == first.pk
    assert run.tokens_used == call.tokens  # charged once: to the lost attempt that paid for it
    assert StepAttempt.objects.get(pk=first.pk).tokens == call.tokens
    resumed = run.attempts.get(state_name="triage", status=AttemptStatus.SUCCEEDED)
    assert resumed.tokens == 0
    assert Event.objects.get(run=run, kind=EventKind.MODEL_REPLAYED).attempt_id == resumed.pk


# --- contracts ------------------------------------------------------------------------------------------------


def contracted(name: str, **fields: Any) -> str:
    publish({"name": name, "start_at": "lookup", "states": {
        "lookup": task("test.answer", args={"output": {"customer": {"id": 7, "plan": "pro"}}}, next="act"),
        "act": task("test.echo_input", end=True, **fields),
    }})
    return name


def test_a_state_receives_only_the_fields_its_input_mapping_declares():
    run = drain(start_run(contracted("contract_ok", input={"plan": "lookup.customer.plan"},
                                     input_schema={"type": "object", "required": ["plan"]}), {"secret": "x"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == {"received": {"plan": "pro"}}


def test_a_mapped_path_that_holds_nothing_fails_as_context_loss_naming_the_field():
    run = drain(start_run(contracted("contract_missing", input={"email": "lookup.customer.email"}), {})[0])
    assert run.status == RunStatus.FAILED
    assert run.failure_mode == FailureMode.CONTEXT_LOSS
    assert "input field 'email'" in run.error["message"] and "lookup.customer.email" in run.error["message"]
    assert run.error["type"] == "ContractViolation"


def test_input_of_the_wrong_type_fails_as_context_loss_naming_the_field():
    schema = {"type": "object", "properties": {"plan": {"type": "integer"}}}
    name = contracted("contract_type", input={"plan": "lookup.customer.plan"}, input_schema=schema)
    run = drain(start_run(name, {})[0])
    assert run.failure_mode == FailureMode.CONTEXT_LOSS
    assert "at plan: 'pro' is not of type 'integer'" in run.error["message"]


def test_output_that_breaks_its_schema_fails_as_context_loss():
    schema = {"type": "object", "required": ["invoice"]}
    run = drain(start_run(contracted("contract_output", output_schema=schema), {})[0])
    assert run.failure_mode == FailureMode.CONTEXT_LOSS
    assert "output_schema" in run.error["message"] and "'invoice' is a required property" in run.error["message"]


# --- handoffs -------------------------------------------------------------------------------------------------


def peers(name: str, max_depth: int | None = 3) -> str:
    """triage hands off to billing with only the invoice number; billing may hand back. Without
    a depth cap of its own, the definition is no declared network (which needs one)."""
    top = {"topology": "network", "budgets": {"max_depth": max_depth}} if max_depth else {"budgets": {"max_steps": 50}}
    publish({"name": name, "start_at": "triage", **top,
             "states": {
                 "triage": agent("test.router", routes=["to_billing", "done"]),
                 "to_billing": {"type": "handoff", "to": "billing",
                                "input": {"route": "input.billing_route", "invoice": "input.invoice"}},
                 "billing": agent("test.router", routes=["to_triage", "done"]),
                 "to_triage": {"type": "handoff", "to": "triage",
                               "input": {"route": "input.triage_route"}},
                 "done": {"type": "succeed"},
             }})
    return name


def test_a_handoff_passes_only_the_declared_part_of_the_context():
    run = drain(start_run(peers("handoff_ok"), {"route": "to_billing", "billing_route": "done",
                                               "invoice": "INV-9", "card": "4242"})[0])
    assert run.status == RunStatus.SUCCEEDED, run.error
    billing = run.attempts.get(state_name="billing")
    assert billing.input == {"route": "done", "invoice": "INV-9"}  # not the card number
    assert run.depth_used == 1
    event = Event.objects.get(run=run, kind=EventKind.HANDED_OFF)
    assert event.data["to"] == "billing" and event.data["fields"] == ["invoice", "route"]


def test_agents_handing_work_back_and_forth_stop_at_the_depth_cap():
    run = drain(start_run(peers("handoff_loop", max_depth=3), {
        "route": "to_billing", "billing_route": "to_triage", "triage_route": "to_billing", "invoice": "I"})[0])
    assert run.status == RunStatus.FAILED
    assert run.failure_mode == FailureMode.COST_EXPLOSION
    assert run.error["type"] == "DepthExceeded" and "depth cap of 3" in run.error["message"]
    assert run.depth_used == 3


def test_a_handoff_whose_declared_field_is_missing_fails_as_context_loss():
    run = drain(start_run(peers("handoff_missing"), {"route": "to_billing", "invoice": "INV-1"})[0])
    assert run.failure_mode == FailureMode.CONTEXT_LOSS
    assert "input field 'route'" in run.error["message"]
    assert not run.attempts.filter(state_name="billing").exists()


# --- budgets ----------------------------------------------------------------------------------------------------


def test_a_budget_default_from_settings_applies_when_the_definition_sets_none(settings):
    settings.RATCHET = {**settings.RATCHET, "DEFAULT_MAX_DEPTH": 1}
    run = drain(start_run(peers("depth_default", max_depth=None), {
        "route": "to_billing", "billing_route": "to_triage", "triage_route": "to_billing", "invoice": "I"})[0])
    assert run.error["type"] == "DepthExceeded" and "depth cap of 1" in run.error["message"]


def test_more_branches_at_once_than_the_parallel_agents_budget_stops_the_run():
    branches = {b: {"start_at": f"{b}_work", "states": {f"{b}_work": answer(b)}} for b in ("a", "b", "c")}
    publish({"name": "too_many_agents", "start_at": "fan", "budgets": {"max_parallel_agents": 2}, "states": {
        "fan": {"type": "parallel", "branches": branches, "end": True}}})
    run = drain(start_run("too_many_agents", {})[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert "3 branches at work at once" in run.error["message"]
    assert not run.attempts.exists()
