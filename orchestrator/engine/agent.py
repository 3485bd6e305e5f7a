"""The agent step: one model turn per visit of an agent state.

A visit sends the conversation to the model and checkpoints its answer (model_calls.py).
When the answer asks for tools, the step ends there and the engine enters the same state
again: that next visit runs the tools (side effects through ``ctx.effect``, deduplicated like
any step's) and asks the model again. So every model turn is a checkpointed step, a loop is
bounded by the run's step budget, and a worker that dies between turns loses nothing.

When the definition lists ``routes`` for the state, the model picks the next state by calling
the ``choose_next_state`` tool; a pick outside the list (or none) raises ``RouteRefused``:
never followed, the attempt fails, and the answer is discarded so a retry asks again.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from ..conf import ratchet_setting
from . import contracts, model_calls
from .breakers import note_call
from .context import StepContext
from .definition import State
from .errors import RouteRefused
from .providers import ModelAnswer, ModelRequest, get_provider
from .providers.base import ToolCall
from .registry import get_tool
from .tool_guards import breaker_of_tool

ROUTE_TOOL = "choose_next_state"


def run_agent(ctx: StepContext, state: State) -> dict[str, Any]:
    provider_name = state.provider or ratchet_setting("MODEL_PROVIDER")
    model = state.model or get_provider(provider_name).default_model()
    previous = ctx.context.get(state.context_key)
    if isinstance(previous, dict) and previous.get("tool_calls"):
        messages = [*previous["messages"], *_tool_results(ctx, state, previous["tool_calls"])]
        turn = int(previous.get("turn", 0)) + 1
    else:
        messages = [{"role": "system", "content": instructions(state)}, {"role": "user", "content": _text(ctx.input)}]
        turn = 1
    request = ModelRequest(model=model, messages=messages, tools=_tool_specs(state))
    answer, call, paid = model_calls.ask(ctx.claim, provider_name, request)
    if paid:
        ctx.usage(tokens=answer.tokens_in + answer.tokens_out, cost=answer.cost or 0)
    try:
        output = _outcome(state, answer, messages, turn)
        if not output["tool_calls"]:
            contracts.check_output(state, output)
        return output
    except Exception:
        model_calls.discard(call)
        raise


def instructions(state: State) -> str:
    text = state.instructions or "You are a helpful agent."
    if state.routes:
        text += (f"\n\nWhen you have your answer, call {ROUTE_TOOL} with the next step, one of: "
                 f"{', '.join(state.routes)}.")
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _tool_specs(state: State) -> list[dict[str, Any]]:
    specs = [tool.spec() for tool in (get_tool(name) for name in state.tools) if tool is not None]
    if state.routes:
        specs.append({"type": "function", "function": {
            "name": ROUTE_TOOL,
            "description": "Pick the workflow's next step. Call it once, with your final answer.",
            "parameters": {"type": "object", "required": ["next"], "properties": {
                "next": {"type": "string", "enum": list(state.routes)}, "reason": {"type": "string"}}},
        }})
    return specs


def _outcome(state: State, answer: ModelAnswer, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
    conversation = [*messages, answer.message()]
    wanted = [c for c in answer.tool_calls if c.name != ROUTE_TOOL]
    if wanted and state.tools:
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in answer.tool_calls]
        return {"content": answer.content, "data": None, "route": None, "tool_calls": calls,
                "messages": conversation, "turn": turn}
    if wanted:
        raise RouteRefused(f"the model called tool '{wanted[0].name}', but state '{state.name}' lists no tools")
    picks = [c.arguments.get("next") for c in answer.tool_calls if c.name == ROUTE_TOOL]
    route = picks[-1] if picks else None
    if state.routes and route not in state.routes:
        said = f"picked '{route}'" if route is not None else "picked no next state"
        raise RouteRefused(f"the model {said}; state '{state.name}' may only go to "
                           f"{', '.join(state.routes)}. The pick was refused, not followed")
    if not state.routes and route is not None:
        raise RouteRefused(f"the model picked '{route}', but state '{state.name}' lists no routes")
    return {"content": answer.content, "data": _parsed(answer.content), "route": route, "tool_calls": [],
            "messages": conversation, "turn": turn}


def _parsed(content: str | None) -> Any:
    """The answer as JSON when it is JSON (an agent asked for structured output), else None."""
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def _tool_results(ctx: StepContext, state: State, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the tools the last answer asked for; a tool the state does not list, or arguments
    that break the tool's schema, is answered with an error the model can act on. A tool that
    raises fails the step (its retry policy applies)."""
    results = []
    for raw in calls:
        call = ToolCall(raw["id"], raw["name"], raw["arguments"])
        results.append({"role": "tool", "tool_call_id": call.id, "content": _text(_run_tool(ctx, state, call))})
    return results


def _run_tool(ctx: StepContext, state: State, call: ToolCall) -> Any:
    if call.name == ROUTE_TOOL:
        return {"error": f"{ROUTE_TOOL} was called beside other tools; call it alone, with your final answer"}
    tool = get_tool(call.name) if call.name in state.tools else None
    if tool is None:
        return {"error": f"there is no tool named '{call.name}'; the tools are: {', '.join(state.tools)}"}
    problem = best_match(Draft202012Validator(tool.parameters).iter_errors(call.arguments))
    if problem is not None:
        return {"error": f"arguments of {call.name} are invalid: {problem.message}"}
    guarded = breaker_of_tool(call.name)
    try:
        result = tool.fn(ctx, call.arguments)
    except Exception:
        note_call(ctx.claim.attempt, guarded, succeeded=False)
        raise
    note_call(ctx.claim.attempt, guarded, succeeded=True)
    return result
