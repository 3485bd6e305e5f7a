"""Handlers for tests. Each execution is recorded at the sink (outside the engine's
database), so a test can count how many times a step really ran."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from orchestrator.demo import sink
from orchestrator.sdk import (
    EffectNotDone,
    ModelAnswer,
    ModelRequest,
    StepContext,
    handler,
    offline_model,
    reducer,
    tool,
)
from orchestrator.sdk import answer as offline_answer

from . import state_type_handlers  # noqa: F401 (registers its handlers)


def count_execution(ctx: StepContext) -> None:
    sink.deliver(f"exec-{ctx.run_id}-{ctx.state_name}", "execution", {"attempt": ctx.attempt_number})


@handler("test.counted_sleep")
def counted_sleep(ctx: StepContext) -> dict[str, Any]:
    count_execution(ctx)
    seconds = float(ctx.args.get("seconds", 0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.1, max(end - time.monotonic(), 0)))
        if ctx.args.get("heartbeat"):
            ctx.heartbeat({"left": round(end - time.monotonic(), 2)})
    return {"slept": seconds}


@handler("test.fail_until_flag")
def fail_until_flag(ctx: StepContext) -> dict[str, Any]:
    count_execution(ctx)
    if not Path(ctx.input["flag"]).exists():
        raise RuntimeError("the flag file is missing")
    return {"flag": True}


@handler("test.effect_with_pause")
def effect_with_pause(ctx: StepContext) -> dict[str, Any]:
    """Delivers at the sink, then sleeps inside the effect (so a kill lands between intent and confirm)."""
    inside = float(ctx.args.get("inside_seconds", 0))
    idempotent = bool(ctx.args.get("idempotent", False))

    def deliver(key: str) -> dict[str, Any]:
        result = sink.deliver(key, "payment", {"run": str(ctx.run_id)}, idempotency_key=key if idempotent else None)
        time.sleep(inside)
        return result

    result = ctx.effect("payment", deliver, idempotent=idempotent)
    time.sleep(float(ctx.args.get("after_seconds", 0)))
    return {"delivery": result["delivery"]}


def undo_charge(result: dict[str, Any], idempotency_key: str) -> None:
    sink.deliver(f"{idempotency_key}-undo", "undo", result)


@handler("test.charge_with_compensation")
def charge_with_compensation(ctx: StepContext) -> dict[str, Any]:
    key = ctx.args.get("key", "charge")
    return ctx.effect(key, lambda k: sink.deliver(k, "charge", {}), compensate=undo_charge)


@handler("test.fail")
def fail(ctx: StepContext) -> None:
    count_execution(ctx)
    raise ValueError(ctx.args.get("message", "boom"))


@handler("test.usage")
def usage(ctx: StepContext) -> dict[str, Any]:
    ctx.usage(tokens=int(ctx.args.get("tokens", 0)), cost=float(ctx.args.get("cost", 0)))
    return {}


@handler("test.not_json")
def not_json(ctx: StepContext) -> object:
    return {"when": object()}


@handler("test.effect_fails_first")
def effect_fails_first(ctx: StepContext) -> dict[str, Any]:
    """The downstream call fails on the first try, then works. ``args.refused``: the failure
    is a definite refusal (EffectNotDone); otherwise a timeout whose outcome is unknown."""

    def call(key: str) -> dict[str, Any]:
        if ctx.attempt_number == 1:
            if ctx.args.get("refused", True):
                raise EffectNotDone("downstream refused the call")
            raise TimeoutError("no answer from downstream; the request may have arrived")
        return sink.deliver(key, "payment", {})

    return ctx.effect("payment", call)


@handler("test.effect_not_json")
def effect_not_json(ctx: StepContext) -> object:
    return ctx.effect("odd", lambda key: {"at": object()})


@handler("test.swallows_uncertain")
def swallows_uncertain(ctx: StepContext) -> dict[str, Any]:
    """A handler that catches everything, including the engine's "this effect is uncertain"."""

    def no_answer(key: str) -> None:
        raise TimeoutError("no answer from downstream")

    try:
        ctx.effect("payment", no_answer)
    except Exception:
        pass
    return {"carried_on": True}


def undo_unless_flag(result: dict[str, Any], idempotency_key: str) -> None:
    """A compensation that fails until the flag file named in the run's input exists."""
    flag = sink.lookup(f"{idempotency_key}-flag")
    if flag is None:
        raise ConnectionError("the refund service is down")
    sink.deliver(f"{idempotency_key}-undo", "undo", result)


@handler("test.charge_with_fragile_undo")
def charge_with_fragile_undo(ctx: StepContext) -> dict[str, Any]:
    return ctx.effect("charge", lambda k: sink.deliver(k, "charge", {}), compensate=undo_unless_flag)


@handler("test.spend_and_fail")
def spend_and_fail(ctx: StepContext) -> None:
    ctx.usage(tokens=int(ctx.args.get("tokens", 400)))
    raise RuntimeError("the model answered nonsense")


@handler("test.unstorable")
def unstorable(ctx: StepContext) -> dict[str, Any]:
    """Outputs JSON that SQLite takes and PostgreSQL's jsonb refuses."""
    values = {"nan": float("nan"), "nul": "a\x00b", "surrogate": "\ud800"}
    return {"answer": {"value": values[ctx.args["kind"]]}}


@handler("test.kills_its_worker")
def kills_its_worker(ctx: StepContext) -> None:
    """A poison step: it takes its worker down every time (a segfaulting library, an OOM kill)."""
    count_execution(ctx)
    os.kill(os.getpid(), signal.SIGKILL)


@handler("test.answer")
def answer(ctx: StepContext) -> Any:
    """Returns ``args.output``; with ``args.seen`` also what it saw of the context."""
    output = ctx.args.get("output", {})
    if ctx.args.get("seen"):
        return {**output, "seen": sorted(ctx.context)}
    return output


@reducer("test.sum")
def sum_of_n(outputs: dict[str, Any]) -> dict[str, Any]:
    return {"n": sum(out["n"] for out in outputs.values()), "from": list(outputs)}


@handler("test.double")
def double(ctx: StepContext) -> dict[str, Any]:
    """A map item: doubles ``n``; fails when the item says so."""
    if ctx.input.get("fail"):
        raise ValueError(f"item {ctx.context.get('index')} asked to fail")
    return {"n": ctx.input["n"] * 2}


# --- agents: offline models and tools ---------------------------------------------------------


def _request_input(request: ModelRequest) -> dict[str, Any]:
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    return json.loads(user)


@offline_model("test.router")
def router(request: ModelRequest) -> ModelAnswer:
    """Picks the route its input names (``{"route": "billing"}``), whatever the definition lists.
    Each answer is recorded at the sink, so a test counts what the model was really asked."""
    wanted = _request_input(request)
    sink.deliver(f"model-{wanted.get('tag', 'router')}", "model_call", {"route": wanted.get("route")})
    calls = [("choose_next_state", {"next": wanted["route"]})] if "route" in wanted else []
    return offline_answer(request, content=json.dumps({"picked": wanted.get("route")}), tool_calls=calls)


@offline_model("test.adder")
def adder(request: ModelRequest) -> ModelAnswer:
    """Asks the ``test.add`` tool for each pair of its input, then answers the total."""
    results = [json.loads(m["content"]) for m in request.messages if m["role"] == "tool"]
    pairs = _request_input(request)["pairs"]
    sink.deliver(f"model-adder-{len(results)}", "model_call", {"turn": len(results)})
    if len(results) < len(pairs):
        a, b = pairs[len(results)]
        return offline_answer(request, tool_calls=[("test.add", {"a": a, "b": b})])
    return offline_answer(request, content=json.dumps({"total": sum(r["sum"] for r in results)}))


@offline_model("test.wrong_tool")
def wrong_tool(request: ModelRequest) -> ModelAnswer:
    """Calls a tool nobody listed, then a listed one with bad arguments, then answers what it was told."""
    told = [json.loads(m["content"]) for m in request.messages if m["role"] == "tool"]
    if not told:
        return offline_answer(request, tool_calls=[("delete_everything", {})])
    if len(told) == 1:
        return offline_answer(request, tool_calls=[("test.add", {"a": "two"})])
    return offline_answer(request, content=json.dumps({"errors": [t["error"] for t in told]}))


@tool("test.add", parameters={"type": "object", "required": ["a", "b"],
                              "properties": {"a": {"type": "number"}, "b": {"type": "number"}}})
def add_tool(ctx: StepContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Adds two numbers (and records each call at the sink)."""
    sink.deliver(f"tool-add-{ctx.run_id}-{arguments['a']}-{arguments['b']}", "tool_call", arguments)
    return {"sum": arguments["a"] + arguments["b"]}


@handler("test.echo_input")
def echo_input(ctx: StepContext) -> dict[str, Any]:
    return {"received": ctx.input}


@tool("test.slow_add", parameters={"type": "object", "required": ["a", "b"],
                                   "properties": {"a": {"type": "number"}, "b": {"type": "number"}}})
def slow_add(ctx: StepContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Adds two numbers, slowly (a worker can be killed while it works)."""
    time.sleep(1.5)
    return {"sum": arguments["a"] + arguments["b"]}


@offline_model("test.tool_caller")
def tool_caller(request: ModelRequest) -> ModelAnswer:
    """Calls the tool its input names once (``{"tool": "test.down"}``), then answers."""
    results = [m for m in request.messages if m["role"] == "tool"]
    if not results:
        return offline_answer(request, tool_calls=[(_request_input(request)["tool"], {})])
    return offline_answer(request, content=json.dumps({"told": json.loads(results[0]["content"])}))


@tool("test.down", parameters={"type": "object"})
def down_tool(ctx: StepContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool whose service is down, unless the run's input says ``"up": true``; each call that
    gets through is recorded at the sink."""
    sink.deliver(f"tool-down-{ctx.run_id}-{ctx.attempt_number}", "down_tool", {})
    if not (ctx.context.get("input") or {}).get("up"):
        raise ConnectionError("the tool's service is down")
    return {"up": True}


@handler("tests.mailer")
def mailer(ctx: StepContext) -> dict[str, Any]:
    """Sends one mail through the sink (an effect, undone by a recall) and reports its usage."""
    to = ctx.input["to"]
    receipt = ctx.effect("mail", lambda key: sink.deliver(f"mail-{to}", "mail", {"to": to}, idempotency_key=key),
                         compensate=lambda result, key: sink.deliver(f"recall-{to}", "recall", {"to": to}))
    ctx.usage(tokens=12, cost=0.002)
    return {"to": to, "delivery": receipt["delivery"]}
