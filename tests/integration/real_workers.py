"""Helpers of the real-worker tests of state types, reducers and failure modes: small
definitions, a pool of workers that has reported in, and checks on what each run recorded.
One pool of two workers per test, many runs at once in it, keeps these tests fast."""

from __future__ import annotations

import socket
from typing import Any

from rq import Worker

from orchestrator.engine.dispatch import redis_connection
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    Event,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    Run,
    StepAttempt,
    WorkerBeat,
)
from orchestrator.models.runs import ACTIVE_ATTEMPT_STATUSES

from ..conftest import wait_for
from ..workflows import finished, task

# --- definition helpers ---------------------------------------------------------------------------


def answer(output: Any, **fields: Any) -> dict[str, Any]:
    return task("test.answer", args={"output": output}, **fields)


def slow(output: Any, seconds: float, **fields: Any) -> dict[str, Any]:
    """A step that takes ``seconds`` on its worker, then returns ``output`` (counted at the sink)."""
    return task("test.slow_answer", args={"output": output, "seconds": seconds}, **fields)


def agent(model: str, **fields: Any) -> dict[str, Any]:
    return {"type": "agent", "provider": "offline", "model": model, **fields}


def branch(*steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A branch of chained steps; the last one ends the branch."""
    states = {}
    for index, (name, state) in enumerate(steps):
        state = dict(state)
        if state["type"] in ("task", "wait") and "next" not in state and "end" not in state:
            state.update({"next": steps[index + 1][0]} if index + 1 < len(steps) else {"end": True})
        states[name] = state
    return {"start_at": steps[0][0], "states": states}


def fan_out(name: str, branches: dict[str, Any], *, budgets: dict[str, Any] | None = None,
            extra_states: dict[str, Any] | None = None, **parallel: Any) -> str:
    """A parallel state ``fan`` whose joined output the state ``after`` echoes back."""
    publish({"name": name, "start_at": "fan", **({"budgets": budgets} if budgets else {}), "states": {
        "fan": {"type": "parallel", "branches": branches, "next": "after", **parallel},
        "after": task("test.echo_input", input={"fan": "fan"}, end=True),
        **(extra_states or {}),
    }})
    return name


def routed(name: str, *, routes: tuple[str, ...] = ("billing", "technical"), **fields: Any) -> str:
    """triage (an agent on the offline router) may go to billing or technical; ``secret`` is a
    state of the workflow (reached by an error path only), not one of triage's routes."""
    publish({"name": name, "start_at": "triage", "states": {
        "triage": agent("test.router", routes=list(routes), catch=[{"errors": ["NeverRaised"], "next": "secret"}],
                        **fields),
        **{route: answer(route, end=True) for route in routes},
        "secret": answer("secret", end=True),
    }})
    return name


def peers(name: str, max_depth: int = 3) -> str:
    """triage hands off to billing with only the invoice number; billing may hand back."""
    publish({"name": name, "start_at": "triage", "topology": "network", "budgets": {"max_depth": max_depth},
             "states": {
                 "triage": agent("test.router", routes=["to_billing", "done"]),
                 "to_billing": {"type": "handoff", "to": "billing",
                                "input": {"route": "input.billing_route", "invoice": "input.invoice"}},
                 "billing": agent("test.router", routes=["to_triage", "done"]),
                 "to_triage": {"type": "handoff", "to": "triage", "input": {"route": "input.triage_route"}},
                 "done": {"type": "succeed"},
             }})
    return name


def contracted(name: str, **fields: Any) -> str:
    """lookup finds a customer; act receives what its contract (``fields``) says."""
    publish({"name": name, "start_at": "lookup", "states": {
        "lookup": answer({"customer": {"id": 7, "plan": "pro"}}, next="act"),
        "act": task("test.echo_input", end=True, **fields),
    }})
    return name


# --- checking helpers -----------------------------------------------------------------------------


def events(run: Run, kind: str) -> list[Event]:
    return list(Event.objects.filter(run=run, kind=kind).order_by("id"))


def count(run: Run, kind: str) -> int:
    return Event.objects.filter(run=run, kind=kind).count()


def start_pool(workers: Any, count: int = 2) -> set[str]:
    """Start the workers and wait until each has reported in. Returns the names their attempts
    carry: the same ``host.pid`` that RQ and the worker heartbeats use."""
    pool = workers(count)
    host, pids = socket.gethostname(), [process.pid for process in pool.processes]
    beats = {f"{host}.{pid}" for pid in pids}
    wait_for(lambda: set(WorkerBeat.objects.values_list("name", flat=True)) >= beats, 30, what="workers to start")
    # The beat comes from each worker's sweeper thread; wait until each also waits on its queues
    # (idle in RQ), or a loaded machine gives the first jobs to one worker while the other starts.
    connection = redis_connection()
    wait_for(lambda: {w.name for w in Worker.all(connection=connection) if w.get_state() == "idle"} >= beats, 30,
             what="workers to wait on their queues")
    return beats


def workers_used() -> set[str]:
    return set(StepAttempt.objects.exclude(worker="").values_list("worker", flat=True))


def settle(started: dict[str, Run], timeout: float = 45) -> dict[str, Run]:
    return {label: finished(run, timeout) for label, run in started.items()}


def assert_quiet(run: Run, label: object = "") -> None:
    """Nothing of a finished run is still scheduled, running or waiting, and no branch is open."""
    assert not run.attempts.filter(status__in=ACTIVE_ATTEMPT_STATUSES).exists(), label
    assert not Line.objects.filter(run=run, status__in=(LineStatus.RUNNING, LineStatus.PAUSED)).exists(), label
    assert not Fork.objects.filter(run=run, status=ForkStatus.OPEN).exists(), label
