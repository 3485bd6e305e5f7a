"""Handlers for tests. Each execution is recorded at the sink (outside the engine's
database), so a test can count how many times a step really ran."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from orchestrator.demo import sink
from orchestrator.sdk import EffectNotDone, StepContext, handler, reducer


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
