"""Every state type, reducer and conflict policy on real worker processes (PostgreSQL or SQLite,
Redis, ``manage.py run_worker``), with the failure modes the in-process tests pin down checked
again where workers really race: a budget exhausted mid-fan-out (no attempt scheduled after the
run failed, the other branches cancelled, a late branch's result discarded), contract violations
(context loss) at every boundary, model routes refused and never followed, and a branch paused on
an uncertain effect while its siblings finish, then resumed by an operator's decision.

To stay fast, each test starts one pool of two workers and runs many runs at once in it, then
checks each run: its status, output, failure mode, events and what really arrived at the sink.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.demo import sink
from orchestrator.engine.dispatch import job_id
from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.runs import decide_effect, start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    AttemptStatus,
    Effect,
    EffectStatus,
    Event,
    EventKind,
    FailureMode,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    ModelCall,
    Run,
    RunStatus,
    StepAttempt,
    WorkerBeat,
)
from orchestrator.models.runs import ACTIVE_ATTEMPT_STATUSES

from ..conftest import wait_for
from ..workflows import finished, task

pytestmark = [pytest.mark.engine, pytest.mark.integration]


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


# --- every state type -----------------------------------------------------------------------------


def test_every_state_type_reaches_its_result_on_real_workers(workers, sink_path):
    """task, choice, succeed, fail, wait, parallel (all / quorum / first), map (tolerated
    failures, a concurrency cap), subworkflow, agent (tools, routes), handoff (and its depth cap)."""
    publish({"name": "st_tasks", "start_at": "lookup", "states": {
        "lookup": answer({"customer": {"id": 7, "plan": "pro"}}, result_path="found", next="act"),
        "act": task("test.echo_input", input={"plan": "found.customer.plan"}, end=True)}})
    publish({"name": "st_choice", "start_at": "measure", "states": {
        "measure": task("test.echo_input", next="route"),
        "route": {"type": "choice", "default": "small", "choices": [
            {"condition": {"path": "measure.received.n", "op": "gt", "value": 10}, "next": "big"},
            {"condition": {"path": "measure.received.n", "op": "eq", "value": 0}, "next": "refuse"}]},
        "big": answer("big", end=True),
        "refuse": {"type": "fail", "error": "EmptyOrder", "cause": "nothing to ship"},
        "small": {"type": "succeed", "output_path": "measure.received"}}})
    publish({"name": "st_wait", "start_at": "nap", "states": {
        "nap": {"type": "wait", "seconds_path": "input.delay", "next": "woken"},
        "woken": answer({"woke": True}, end=True)}})
    fan_out("st_all", {
        "a": branch(("a1", slow({"x": 1}, 0.5))),
        "b": branch(("b1", answer({"y": 2})), ("b2", task("test.answer", args={"output": {"y": 3}, "seen": True}))),
    })
    fan_out("st_quorum", {"a": branch(("qa", answer({"v": 1}))), "b": branch(("qb", task("test.fail"))),
                          "c": branch(("qc", slow({"v": 3}, 0.3)))}, join={"mode": "quorum", "count": 2})
    fan_out("st_first", {"fast": branch(("f1", answer({"v": "fast"}))),
                         "slow": branch(("s1", {"type": "wait", "seconds": 60}), ("s2", answer({"v": "slow"})))},
            join={"mode": "first", "count": 1})
    publish({"name": "st_map", "start_at": "each", "budgets": {"max_steps": 100}, "states": {
        "each": {"type": "map", "items_path": "input.items", "max_concurrency": 3, "tolerated_failure_percentage": 20,
                 "next": "done", "iterator": {"start_at": "double", "states": {
                     "double": task("test.double", input_path="item", end=True)}}},
        "done": {"type": "succeed", "output_path": "each"}}})
    publish({"name": "st_map_capped", "start_at": "each", "states": {
        "each": {"type": "map", "items_path": "input.items", "max_concurrency": 1, "end": True, "iterator": {
            "start_at": "item_nap", "states": {"item_nap": slow("napped", 0.3, end=True)}}}}})
    publish({"name": "st_child", "start_at": "quote", "states": {
        "quote": task("test.usage", args={"tokens": 30, "cost": 0.5}, next="price"),
        "price": task("test.echo_input", input={"sku": "input.sku"}, end=True)}})
    publish({"name": "st_parent", "start_at": "delegate", "states": {
        "delegate": {"type": "subworkflow", "workflow": "st_child", "input": {"sku": "input.sku"}, "next": "after"},
        "after": task("test.echo_input", input={"child": "delegate"}, end=True)}})
    publish({"name": "st_adder", "start_at": "assistant", "budgets": {"max_steps": 20}, "states": {
        "assistant": agent("test.adder", tools=["test.add"], end=True)}})
    routed("st_route")
    peers("st_handoff")
    peers("st_handoff_loop", max_depth=3)
    names = start_pool(workers)

    started = {
        "tasks": start_run("st_tasks", {"secret": "x"})[0],
        "big": start_run("st_choice", {"n": 50})[0],
        "zero": start_run("st_choice", {"n": 0})[0],
        "small": start_run("st_choice", {"n": 3})[0],
        "wait": start_run("st_wait", {"delay": 1.0})[0],
        "all": start_run("st_all")[0],
        "quorum": start_run("st_quorum")[0],
        "first": start_run("st_first")[0],
        "map": start_run("st_map", {"items": [{"n": i, **({"fail": True} if i == 5 else {})} for i in range(8)]})[0],
        "capped": start_run("st_map_capped", {"items": list(range(4))})[0],
        "parent": start_run("st_parent", {"sku": "BOOK", "card": "4242"})[0],
        "adder": start_run("st_adder", {"pairs": [[2, 3], [4, 5]]})[0],
        "route": start_run("st_route", {"route": "technical", "tag": "st-route"})[0],
        "handoff": start_run("st_handoff", {"route": "to_billing", "billing_route": "done", "invoice": "INV-9",
                                            "card": "4242"})[0],
        "loop": start_run("st_handoff_loop", {"route": "to_billing", "billing_route": "to_triage",
                                              "triage_route": "to_billing", "invoice": "I"})[0],
    }
    runs = settle(started)
    for label, run in runs.items():
        assert_quiet(run, label)

    # task: a step's output lands at its result_path; the next receives only its mapped input
    run = runs["tasks"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == {"received": {"plan": "pro"}}
    assert "found" in run.context and "lookup" not in run.context
    assert [a.status for a in run.attempts.order_by("id")] == [AttemptStatus.SUCCEEDED] * 2

    # choice -> task, -> fail, -> succeed (the default): the choice is resolved on the worker
    for label, rule, target in (("big", 0, "big"), ("zero", 1, "refuse"), ("small", "default", "small")):
        (taken,) = events(runs[label], EventKind.CHOICE_TAKEN)
        assert (taken.data["next"], taken.data["rule"]) == (target, rule), label
    assert runs["big"].status == RunStatus.SUCCEEDED and runs["big"].output == "big"
    zero = runs["zero"]
    assert zero.status == RunStatus.FAILED and zero.failure_mode == FailureMode.REJECTED
    assert zero.error["type"] == "EmptyOrder" and zero.error["message"] == "nothing to ship"
    assert runs["small"].status == RunStatus.SUCCEEDED and runs["small"].output == {"n": 3}
    for label in ("zero", "small"):
        assert list(runs[label].attempts.values_list("state_name", flat=True)) == ["measure"], label

    # wait: the timer fired (the workers' sweeper dispatched it) no sooner than it was due
    run = runs["wait"]
    assert run.status == RunStatus.SUCCEEDED and run.output == {"woke": True}
    nap = run.attempts.get(state_name="nap")
    assert nap.claimed_at - nap.scheduled_at >= timedelta(seconds=1.0)
    assert events(run, EventKind.WAIT_STARTED)[0].data["seconds"] == 1.0

    # parallel, join all: each branch in its own context, the join collects, once
    run = runs["all"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    fan = run.output["received"]["fan"]
    assert fan["a"] == {"x": 1} and fan["b"]["y"] == 3
    assert "b1" in fan["b"]["seen"] and "a1" not in fan["b"]["seen"]
    assert sink.requests(f"exec-{run.pk}-a1", sink_path) == 1
    assert count(run, EventKind.JOINED) == 1 and Fork.objects.get(run=run).status == ForkStatus.JOINED
    assert set(Line.objects.filter(run=run).values_list("status", flat=True)) == {LineStatus.SUCCEEDED}

    # quorum of 2: joined without the failing branch (failed, or cancelled by the join)
    run = runs["quorum"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert set(run.output["received"]["fan"]) == {"a", "c"}
    assert Line.objects.get(run=run, branch="b").status in (LineStatus.FAILED, LineStatus.CANCELLED)
    assert count(run, EventKind.JOINED) == 1

    # first 1: the fast branch wins; the one waiting on a 60 s timer is cancelled, never run
    run = runs["first"]
    assert run.status == RunStatus.SUCCEEDED and run.output["received"]["fan"] == {"fast": {"v": "fast"}}
    assert Line.objects.get(run=run, branch="slow").status == LineStatus.CANCELLED
    assert run.attempts.get(state_name="s1").status == AttemptStatus.CANCELLED
    assert not run.attempts.filter(state_name="s2").exists()

    # map: every item, in order, minus the one tolerated failure
    run = runs["map"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert [out["n"] for out in run.output] == [0, 2, 4, 6, 8, 12, 14]
    fork = Fork.objects.get(run=run)
    assert (fork.started, fork.done, fork.failed) == (8, 7, 1)
    assert count(run, EventKind.JOINED) == 1

    # map, max_concurrency 1: two workers, yet no two items ever ran at once
    run = runs["capped"]
    assert run.status == RunStatus.SUCCEEDED and run.output == ["napped"] * 4
    naps = list(run.attempts.filter(state_name="item_nap").order_by("claimed_at"))
    assert len(naps) == 4
    assert all(later.claimed_at >= earlier.finished_at for earlier, later in zip(naps, naps[1:], strict=False))

    # subworkflow: the child got only its mapped input; its output and usage are the parent's
    run = runs["parent"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == {"received": {"child": {"received": {"sku": "BOOK"}}}}
    (child,) = Run.objects.filter(parent=run)
    assert child.status == RunStatus.SUCCEEDED and child.input == {"sku": "BOOK"}
    assert run.tokens_used == 30 and float(run.cost_used) == 0.5
    delegate = run.attempts.get(state_name="delegate")
    assert delegate.status == AttemptStatus.SUCCEEDED and child.parent_attempt_id == delegate.pk
    assert count(run, EventKind.CHILD_STARTED) == 1 and count(run, EventKind.CHILD_FINISHED) == 1

    # agent with tools: one checkpointed turn per step, each tool call made once
    run = runs["adder"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output["data"] == {"total": 14}
    turns = run.attempts.filter(state_name="assistant").order_by("id")
    assert [a.output["turn"] for a in turns] == [1, 2, 3]
    assert sink.deliveries(f"tool-add-{run.pk}-2-3", sink_path) == 1
    assert sink.deliveries(f"tool-add-{run.pk}-4-5", sink_path) == 1
    calls = ModelCall.objects.filter(run=run)
    assert calls.count() == 3 and run.tokens_used == sum(c.tokens for c in calls) > 0

    # agent with routes: goes where the model picks, among its routes
    run = runs["route"]
    assert run.status == RunStatus.SUCCEEDED and run.output == "technical"
    assert [e.data["next"] for e in events(run, EventKind.ROUTE_TAKEN)] == ["technical"]
    assert not run.attempts.filter(state_name="billing").exists()
    assert sink.deliveries("model-st-route", sink_path) == 1

    # handoff: only the declared part of the context passes; the depth is counted
    run = runs["handoff"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts.get(state_name="billing").input == {"route": "done", "invoice": "INV-9"}
    assert run.depth_used == 1
    (handed,) = events(run, EventKind.HANDED_OFF)
    assert handed.data["to"] == "billing" and handed.data["fields"] == ["invoice", "route"]

    # handoffs back and forth stop at the depth cap
    run = runs["loop"]
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert run.error["type"] == "DepthExceeded" and "depth cap of 3" in run.error["message"]
    assert run.depth_used == 3 and count(run, EventKind.HANDED_OFF) == 3

    assert workers_used() == names  # every step ran on the pool's workers, and both took work


# --- every reducer under every conflict policy ------------------------------------------------------

POLICIES = ("error", "prefer_first", "prefer_last", "vote")
# Branch outputs per strategy. Four branches disagree so that each policy picks differently:
# prefer_first takes a, prefer_last d (alphabetical branch order), vote the value two share.
OUTPUTS: dict[str, dict[str, Any]] = {
    "collect": {"a": {"k": 1}, "b": {"k": 2}, "c": {"k": 2}, "d": {"k": 3}},
    "merge": {b: {"k": k, "same": "s"} for b, k in (("a", 1), ("b", 2), ("c", 2), ("d", 3))},
    "highest_score": {"a": {"score": 0.9, "text": "x"}, "b": {"score": 0.9, "text": "y"},
                      "c": {"score": 0.9, "text": "y"}, "d": {"score": 0.9, "text": "w"},
                      "e": {"score": 0.1, "text": "low"}},
    "majority_vote": {"a": {"label": "x"}, "b": {"label": "y"}, "c": {"label": "x"}, "d": {"label": "y"}},
    "custom": {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}, "d": {"n": 4}},
}
LEADERS = {b: OUTPUTS["highest_score"][b] for b in "abcd"}
# (value joined, the conflict recorded as (key, values, chosen)) per strategy and policy; a
# conflict without a value is one the policy cannot settle: the join fails.
MERGE_VALUES = {"a": 1, "b": 2, "c": 2, "d": 3}
VOTES = {b: out["label"] for b, out in OUTPUTS["majority_vote"].items()}
EXPECTED: dict[tuple[str, str], tuple[Any, tuple[str, dict[str, Any], Any] | None]] = {
    **{("collect", p): (OUTPUTS["collect"], None) for p in POLICIES},
    **{("custom", p): ({"n": 10, "from": ["a", "b", "c", "d"]}, None) for p in POLICIES},
    ("merge", "error"): (None, ("k", MERGE_VALUES, None)),
    ("merge", "prefer_first"): ({"k": 1, "same": "s"}, ("k", MERGE_VALUES, 1)),
    ("merge", "prefer_last"): ({"k": 3, "same": "s"}, ("k", MERGE_VALUES, 3)),
    ("merge", "vote"): ({"k": 2, "same": "s"}, ("k", MERGE_VALUES, 2)),
    ("highest_score", "error"): (None, ("score", LEADERS, None)),
    ("highest_score", "prefer_first"): (LEADERS["a"], ("score", LEADERS, LEADERS["a"])),
    ("highest_score", "prefer_last"): (LEADERS["d"], ("score", LEADERS, LEADERS["d"])),
    ("highest_score", "vote"): (LEADERS["b"], ("score", LEADERS, LEADERS["b"])),
    ("majority_vote", "error"): (None, ("vote", VOTES, None)),
    ("majority_vote", "prefer_first"): ("x", ("vote", VOTES, "x")),
    ("majority_vote", "prefer_last"): ("y", ("vote", VOTES, "y")),
}


def reducer_spec(strategy: str, policy: str) -> dict[str, Any]:
    spec = {"strategy": strategy, "on_conflict": policy}
    if strategy == "custom":
        spec["handler"] = "test.sum"
    if strategy == "majority_vote":
        spec["path"] = "label"
    return spec


def reducer_branches(outputs: dict[str, Any]) -> dict[str, Any]:
    """One step per branch. Branch a is the slowest (it usually finishes last): "first" and "last"
    still mean the alphabetical branch order, not the order the workers finished them in."""
    return {b: branch((f"{b}_out", slow(out, 0.2) if b == "a" else answer(out))) for b, out in outputs.items()}


def test_every_reducer_under_every_conflict_policy_joins_once_and_records_each_disagreement(workers, sink_path):
    """collect, merge, highest_score, majority_vote and custom, each under error, prefer_first,
    prefer_last and vote (majority_vote + vote is refused at publish): twenty runs at once."""
    with pytest.raises(DefinitionError, match="a majority vote that ties cannot be settled by another vote"):
        fan_out("rd_majority_vote_vote", reducer_branches(OUTPUTS["majority_vote"]),
                reducer=reducer_spec("majority_vote", "vote"))
    for strategy, policy in EXPECTED:
        fan_out(f"rd_{strategy}_{policy}", reducer_branches(OUTPUTS[strategy]), reducer=reducer_spec(strategy, policy))
    clear = {"a": {"label": "x"}, "b": {"label": "y"}, "c": {"label": "x"}}  # a clear majority: nothing to settle
    fan_out("rd_majority_clear", reducer_branches(clear), reducer=reducer_spec("majority_vote", "error"))
    start_pool(workers)

    started = {combo: start_run(f"rd_{combo[0]}_{combo[1]}")[0] for combo in EXPECTED}
    clear_run = start_run("rd_majority_clear")[0]
    runs = settle(started)

    for (strategy, policy), run in runs.items():
        combo = f"{strategy}/{policy}"
        value, conflict = EXPECTED[(strategy, policy)]
        assert_quiet(run, combo)
        for name in OUTPUTS[strategy]:  # every branch ran exactly once, on a worker
            (out,) = run.attempts.filter(state_name=f"{name}_out")
            assert out.status == AttemptStatus.SUCCEEDED and out.worker, combo
        assert sink.requests(f"exec-{run.pk}-a_out", sink_path) == 1, combo
        recorded = events(run, EventKind.AGGREGATION_CONFLICT)
        if conflict is None:
            assert recorded == [], combo
        else:
            (event,) = recorded
            key, values, chosen = conflict
            assert (event.data["key"], event.data["values"], event.data["policy"]) == (key, values, policy), combo
            assert event.data["chosen"] == chosen, combo
        if value is None:  # the error policy: the join fails, nothing after it runs
            assert run.status == RunStatus.FAILED, combo
            assert run.failure_mode == FailureMode.CONFLICTING_AGGREGATION, combo
            assert run.error["type"] == "AggregationConflict", combo
            assert count(run, EventKind.JOINED) == 0 and count(run, EventKind.JOIN_FAILED) == 1, combo
            assert not run.attempts.filter(state_name="after").exists(), combo
            assert Fork.objects.get(run=run).status == ForkStatus.FAILED, combo
        else:
            assert run.status == RunStatus.SUCCEEDED, (combo, run.error)
            assert run.context["fan"] == value and run.output == {"received": {"fan": value}}, combo
            (joined,) = events(run, EventKind.JOINED)
            assert joined.data["branches"] == sorted(OUTPUTS[strategy]), combo
            assert joined.data["conflicts"] == (0 if conflict is None else 1), combo

    clear_run = finished(clear_run)
    assert clear_run.status == RunStatus.SUCCEEDED and clear_run.context["fan"] == "x"
    assert count(clear_run, EventKind.AGGREGATION_CONFLICT) == 0


# --- budgets exhausted mid-fan-out ------------------------------------------------------------------


def test_a_budget_exhausted_mid_fan_out_fails_the_run_cancels_the_branches_and_schedules_nothing_more(
        workers, sink_path, redis_conn):
    """Tokens in a parallel state (a sibling still running on the other worker, another waiting
    on a timer), cost in a map, steps in a map: each run fails as cost_explosion, once."""
    fan_out("bx_tokens", {
        "burn": branch(("burn_nap", slow({}, 1.0)), ("burn_spend", task("test.usage", args={"tokens": 600}))),
        "slow": branch(("slow_1", slow({"done": 1}, 2.5)), ("slow_2", slow({"done": 2}, 0))),
        "timer": branch(("timer_wait", {"type": "wait", "seconds": 30}), ("timer_after", slow({}, 0))),
    }, budgets={"max_tokens": 500})
    iterate = {"start_at": "charge", "states": {"charge": task("test.usage", args={"cost": 0.4}, end=True)}}
    publish({"name": "bx_cost", "start_at": "each", "budgets": {"max_cost": 1.0}, "states": {
        "each": {"type": "map", "items_path": "input.items", "max_concurrency": 2, "iterator": iterate, "end": True}}})
    steps = {"start_at": "step_item", "states": {"step_item": answer({"ok": True}, end=True)}}
    publish({"name": "bx_steps", "start_at": "each", "budgets": {"max_steps": 4}, "states": {
        "each": {"type": "map", "items_path": "input.items", "max_concurrency": 2, "iterator": steps, "end": True}}})
    start_pool(workers)

    tokens, _ = start_run("bx_tokens")
    # Both workers busy in the fan-out: slow_1 is running when burn_spend breaks the budget.
    wait_for(lambda: set(tokens.attempts.filter(status=AttemptStatus.RUNNING).values_list("state_name", flat=True))
             == {"burn_nap", "slow_1"}, 15, what="burn_nap and slow_1 running")
    cost, _ = start_run("bx_cost", {"items": list(range(6))})
    step, _ = start_run("bx_steps", {"items": list(range(6))})
    runs = settle({"tokens": tokens, "cost": cost, "steps": step})

    # tokens, in a parallel state: the breach fails the run and cancels the other branches
    run = runs["tokens"]
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert run.error["type"] == "BudgetExceeded"
    assert "token budget of 500 exceeded (600 used)" in run.error["message"]
    (breach,) = events(run, EventKind.BUDGET_EXCEEDED)
    assert breach.state_name == "burn_spend" and run.tokens_used == 600
    assert run.failed_attempt.state_name == "burn_spend"  # the step that broke the budget, not a sibling
    lines = {x.branch: x.status for x in Line.objects.filter(run=run)}
    assert lines["slow"] == LineStatus.CANCELLED and lines["timer"] == LineStatus.CANCELLED
    assert Fork.objects.get(run=run).status == ForkStatus.CANCELLED
    assert run.attempts.get(state_name="timer_wait").status == AttemptStatus.CANCELLED
    slow_1 = run.attempts.get(state_name="slow_1")
    assert slow_1.status == AttemptStatus.CANCELLED
    # slow_1's worker finishes its 2.5 s later (its job leaves Redis): its result is dropped
    # (fenced, or the lost lease stops it), and nothing follows it.
    wait_for(lambda: not redis_conn.exists(f"rq:job:{job_id(slow_1.pk)}"), 15, what="slow_1's job to end")
    slow_1.refresh_from_db()
    assert slow_1.status == AttemptStatus.CANCELLED and slow_1.output is None
    assert sink.requests(f"exec-{run.pk}-slow_1", sink_path) == 1
    for never in ("slow_2", "timer_after", "after"):
        assert not run.attempts.filter(state_name=never).exists(), never
        assert sink.requests(f"exec-{run.pk}-{never}", sink_path) == 0, never
    run = Run.objects.get(pk=run.pk)
    assert run.status == RunStatus.FAILED and run.tokens_used == 600  # the discarded result changed nothing
    assert_quiet(run)
    failed_at = events(run, EventKind.RUN_FAILED)[0]
    assert run.attempts.filter(scheduled_at__gt=run.finished_at).count() == 0
    assert Event.objects.filter(run=run, kind=EventKind.STEP_SCHEDULED, id__gt=failed_at.id).count() == 0
    assert count(run, EventKind.JOINED) == 0

    # cost, in a map: the third item's charge breaks it; no item after the fourth ever starts
    run = runs["cost"]
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert "cost budget of 1.0 exceeded" in run.error["message"]
    assert float(run.cost_used) == pytest.approx(1.2)
    assert run.attempts.filter(state_name="charge", status=AttemptStatus.SUCCEEDED).count() == 3
    fork = Fork.objects.get(run=run)
    assert fork.started == 4 and fork.status == ForkStatus.CANCELLED
    assert sorted(Line.objects.filter(run=run).values_list("ordinal", flat=True)) == [0, 1, 2, 3]
    # two items ended; the line whose charge broke the budget was stopped with the fourth
    lines = list(Line.objects.filter(run=run).values_list("status", flat=True))
    assert sorted(lines) == sorted([LineStatus.SUCCEEDED] * 2 + [LineStatus.CANCELLED] * 2)
    assert (fork.done, fork.failed) == (2, 0)
    assert count(run, EventKind.BUDGET_EXCEEDED) == 1 and count(run, EventKind.JOINED) == 0
    assert_quiet(run)

    # steps, in a map: the item that would take the fifth step is never scheduled
    run = runs["steps"]
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    assert "step budget of 4 used up before 'step_item'" in run.error["message"]
    assert run.steps_used == 4
    items = run.attempts.filter(state_name="step_item")
    assert items.count() == 3 and items.filter(status=AttemptStatus.SUCCEEDED).count() == 2
    assert items.filter(status=AttemptStatus.CANCELLED).count() == 1
    assert count(run, EventKind.BUDGET_EXCEEDED) == 1 and count(run, EventKind.JOINED) == 0
    assert_quiet(run)


# --- contract violations and refused model routes --------------------------------------------------


def test_contract_violations_fail_as_context_loss_and_refused_routes_are_never_followed(workers, sink_path):
    """Input mappings, input and output schemas of tasks, agents, handoffs, sub-workflows and a
    branch; model picks outside an agent's routes (once, retried, none, inside a branch)."""
    contracted("cv_ok", input={"plan": "lookup.customer.plan"}, input_schema={"type": "object", "required": ["plan"]})
    contracted("cv_missing", input={"email": "lookup.customer.email"})
    contracted("cv_type", input={"plan": "lookup.customer.plan"},
               input_schema={"type": "object", "properties": {"plan": {"type": "integer"}}})
    contracted("cv_output", output_schema={"type": "object", "required": ["invoice"]})
    publish({"name": "cv_agent", "start_at": "assistant", "budgets": {"max_steps": 20}, "states": {
        "assistant": agent("test.adder", tools=["test.add"], end=True,
                           output_schema={"type": "object", "required": ["average"]})}})
    peers("cv_handoff")
    publish({"name": "cv_child", "start_at": "quote", "states": {"quote": answer({"cost": 12}, end=True)}})
    publish({"name": "cv_child_input", "start_at": "delegate", "states": {
        "delegate": {"type": "subworkflow", "workflow": "cv_child", "input": {"sku": "input.sku"}, "end": True}}})
    publish({"name": "cv_child_output", "start_at": "delegate", "states": {
        "delegate": {"type": "subworkflow", "workflow": "cv_child", "end": True,
                     "output_schema": {"type": "object", "required": ["price"]}}}})
    fan_out("cv_branch", {"a": branch(("a_act", task("test.echo_input", input={"email": "input.email"}))),
                          "b": branch(("b_wait", {"type": "wait", "seconds": 60}), ("b_after", answer({})))})
    routed("rr_refused")
    routed("rr_retried", routes=("billing",), retry=[{"max_attempts": 3, "interval_seconds": 0}])
    routed("rr_none")
    fan_out("rr_branch", {
        "ask": {"start_at": "ask_agent", "states": {"ask_agent": agent("test.router", routes=["ask_done"]),
                                                    "ask_done": answer("asked", end=True)}},
        "other": branch(("other_1", slow({"v": 1}, 0.3)))},
        catch=[{"errors": ["RouteRefused"], "next": "recover"}],
        extra_states={"recover": slow("recovered", 0, end=True)})
    start_pool(workers)

    started = {
        "ok": start_run("cv_ok", {"secret": "x"})[0],
        "missing": start_run("cv_missing")[0],
        "type": start_run("cv_type")[0],
        "output": start_run("cv_output")[0],
        "agent": start_run("cv_agent", {"pairs": [[1, 2]]})[0],
        "handoff": start_run("cv_handoff", {"route": "to_billing", "invoice": "INV-1"})[0],
        "child_input": start_run("cv_child_input", {"card": "4242"})[0],
        "child_output": start_run("cv_child_output")[0],
        "branch": start_run("cv_branch")[0],
        "refused": start_run("rr_refused", {"route": "secret", "tag": "rr-refused"})[0],
        "retried": start_run("rr_retried", {"route": "nowhere", "tag": "rr-retried"})[0],
        "none": start_run("rr_none", {"tag": "rr-none"})[0],
        "in_branch": start_run("rr_branch", {"route": "elsewhere", "tag": "rr-branch"})[0],
    }
    runs = settle(started)
    for label, run in runs.items():
        assert_quiet(run, label)

    run = runs["ok"]  # the control: a contract kept passes only the declared field on
    assert run.status == RunStatus.SUCCEEDED and run.output == {"received": {"plan": "pro"}}

    for label, phrases in (
        ("missing", ["input field 'email'", "lookup.customer.email"]),
        ("type", ["at plan: 'pro' is not of type 'integer'"]),
        ("output", ["output_schema", "'invoice' is a required property"]),
        ("agent", ["output_schema", "'average' is a required property"]),
        ("handoff", ["input field 'route'", "input.billing_route"]),
        ("child_input", ["input field 'sku'", "input.sku"]),
        ("child_output", ["output_schema", "'price' is a required property"]),
        ("branch", ["input field 'email'"]),
    ):
        run = runs[label]
        assert run.status == RunStatus.FAILED, (label, run.status)
        assert run.failure_mode == FailureMode.CONTEXT_LOSS, (label, run.failure_mode, run.error)
        assert run.error["type"] == "ContractViolation", (label, run.error)
        for phrase in phrases:
            assert phrase in run.error["message"], (label, phrase, run.error["message"])

    assert runs["output"].attempts.get(state_name="act").failure_mode == FailureMode.CONTEXT_LOSS
    run = runs["agent"]  # the tools ran; the final answer broke the contract and is discarded
    assert sink.deliveries(f"tool-add-{run.pk}-1-2", sink_path) == 1
    assert list(ModelCall.objects.filter(run=run).order_by("id").values_list("discarded", flat=True)) == [
        False, True]
    assert not runs["handoff"].attempts.filter(state_name="billing").exists()
    assert count(runs["handoff"], EventKind.HANDED_OFF) == 0
    assert not Run.objects.filter(parent=runs["child_input"]).exists()  # no child started
    (child,) = Run.objects.filter(parent=runs["child_output"])
    assert child.status == RunStatus.SUCCEEDED and child.output == {"cost": 12}
    run = runs["branch"]  # the branch's violation fails the run; its waiting sibling is cancelled
    assert run.failed_attempt.state_name == "a_act"
    assert Line.objects.get(run=run, branch="b").status == LineStatus.CANCELLED
    assert count(run, EventKind.JOIN_FAILED) == 1 and not run.attempts.filter(state_name="b_after").exists()

    # refused routes: never followed, paid for, discarded so a retry asks the model again
    run = runs["refused"]
    assert run.status == RunStatus.FAILED and run.error["type"] == "RouteRefused"
    assert "'secret'" in run.error["message"] and "billing, technical" in run.error["message"]
    assert not run.attempts.filter(state_name="secret").exists() and count(run, EventKind.ROUTE_TAKEN) == 0
    assert sink.deliveries("model-rr-refused", sink_path) == 1
    (call,) = ModelCall.objects.filter(run=run)
    assert call.discarded and run.tokens_used == call.tokens > 0

    run = runs["retried"]
    assert run.status == RunStatus.FAILED and run.error["type"] == "RouteRefused"
    assert sink.deliveries("model-rr-retried", sink_path) == 3
    assert ModelCall.objects.filter(run=run, discarded=True).count() == 3
    assert run.attempts.filter(state_name="triage", status=AttemptStatus.FAILED).count() == 3
    assert not run.attempts.exclude(state_name="triage").exists()

    run = runs["none"]
    assert run.status == RunStatus.FAILED and "picked no next state" in run.error["message"]
    assert not run.attempts.exclude(state_name="triage").exists()

    run = runs["in_branch"]  # refused inside a branch: the join fails and the parallel's catch applies
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.context["fan"]["error"]["type"] == "RouteRefused" and run.output == "recovered"
    assert not run.attempts.filter(state_name__in=("ask_done", "after")).exists()
    assert count(run, EventKind.STEP_CAUGHT) == 1 and count(run, EventKind.JOINED) == 0


# --- a branch paused on an uncertain effect -----------------------------------------------------------


def test_a_branch_paused_on_an_uncertain_effect_lets_its_siblings_finish_then_an_operator_decides(
        workers, sink_path):
    """The pay branch's effect times out (uncertain): only that branch pauses, the other finishes
    its steps meanwhile; then retry, happened and compensate each settle one run."""
    fan_out("paused_branch", {
        "pay": branch(("charge", task("test.effect_fails_first", args={"refused": False}))),
        "other": branch(("o1", slow({"v": 1}, 0.2)), ("o_timer", {"type": "wait", "seconds": 1.5}),
                        ("o2", slow({"v": 2}, 0.2))),
    })
    start_pool(workers)
    decisions = ("retry", "happened", "compensate")
    runs = {decision: start_run("paused_branch")[0] for decision in decisions}

    def paused_with_sibling_done(run: Run) -> bool:
        lines = dict(Line.objects.filter(run=run).values_list("branch", "status"))
        return lines == {"pay": LineStatus.PAUSED, "other": LineStatus.SUCCEEDED}

    effects = {}
    for decision, run in runs.items():
        wait_for(lambda run=run: paused_with_sibling_done(run), 30, what=f"{decision}: pay paused, other done")
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING and run.pause_reason == ""  # only the branch waits
        (paused,) = events(run, EventKind.BRANCH_PAUSED)
        assert paused.data["branch"] == "fan#1/pay" and paused.data["key"] == "payment"
        # the sibling went on after the pause: its last step was claimed once the branch paused
        assert run.attempts.get(state_name="o2").claimed_at > paused.created_at
        effect = Effect.objects.get(run=run)
        assert effect.status == EffectStatus.UNCERTAIN and effect.branch_path == "fan#1/pay"
        assert sink.deliveries(effect.idempotency_key, sink_path) == 0  # the first try timed out before it
        assert count(run, EventKind.JOINED) == 0 and not run.attempts.filter(state_name="after").exists()
        effects[decision] = effect

    decide_effect(effects["retry"].pk, "retry")
    decide_effect(effects["happened"].pk, "happened", result={"delivery": -7, "replayed": False})
    decide_effect(effects["compensate"].pk, "compensate")
    runs = settle(runs)
    for run in runs.values():
        assert_quiet(run)
        assert count(run, EventKind.BRANCH_RESUMED) == 1 and count(run, EventKind.BRANCH_PAUSED) == 1

    # retry: the branch runs its step again, which delivers once; then the join, once
    run, effect = runs["retry"], effects["retry"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert sink.deliveries(effect.idempotency_key, sink_path) == 1
    assert run.output["received"]["fan"]["pay"] == sink.lookup(effect.idempotency_key, sink_path)
    assert run.output["received"]["fan"]["other"] == {"v": 2}
    assert list(run.attempts.filter(state_name="charge").order_by("id").values_list("status", flat=True)) == [
        AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert Effect.objects.get(pk=effect.pk).status == EffectStatus.CONFIRMED
    assert count(run, EventKind.JOINED) == 1 and run.attempts.filter(state_name="after").count() == 1

    # happened: the operator saw it downstream; the step takes that result, nothing is sent again
    run, effect = runs["happened"], effects["happened"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert sink.deliveries(effect.idempotency_key, sink_path) == 0
    assert run.output["received"]["fan"]["pay"] == {"delivery": -7, "replayed": False}
    assert count(run, EventKind.JOINED) == 1

    # compensate: the run fails as a duplicate side effect; the join never happens
    run = runs["compensate"]
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.DUPLICATE_SIDE_EFFECT
    assert run.error["type"] == "EffectCompensated"
    assert count(run, EventKind.JOINED) == 0 and not run.attempts.filter(state_name="after").exists()
    assert Line.objects.get(run=run, branch="other").status == LineStatus.SUCCEEDED
    assert sink.deliveries(effects["compensate"].idempotency_key, sink_path) == 0
