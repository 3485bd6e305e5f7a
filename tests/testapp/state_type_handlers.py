"""Handlers only the real-worker state-type tests use (tests/integration/test_state_types.py)."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.demo import sink
from orchestrator.sdk import StepContext, handler


@handler("test.slow_answer")
def slow_answer(ctx: StepContext) -> Any:
    """Sleeps ``args.seconds``, then returns ``args.output``. Each execution is recorded at the
    sink under ``exec-<run>-<state>``, so a test counts real runs."""
    sink.deliver(f"exec-{ctx.run_id}-{ctx.state_name}", "execution", {"attempt": ctx.attempt_number})
    time.sleep(float(ctx.args.get("seconds", 0)))
    return ctx.args.get("output", {})


@handler("test.after_execution_of")
def after_execution_of(ctx: StepContext) -> Any:
    """Waits (up to 30 s) until the state ``args.state`` of the same run has started executing
    (its ``exec-`` key at the sink): a sibling branch is then surely running on another worker."""
    key = f"exec-{ctx.run_id}-{ctx.args['state']}"
    deadline = time.monotonic() + 30
    while not sink.requests(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"waited_for": ctx.args["state"], "seen": bool(sink.requests(key))}
