"""Every state type on real worker processes (PostgreSQL or SQLite, Redis, ``manage.py
run_worker``): many runs at once in one pool of two workers, each checked for its status,
output, events and what really arrived at the sink."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.demo import sink
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import (
    AttemptStatus,
    EventKind,
    FailureMode,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    ModelCall,
    Run,
    RunStatus,
)

from ..workflows import task
from .real_workers import (
    agent,
    answer,
    assert_quiet,
    branch,
    count,
    events,
    fan_out,
    peers,
    routed,
    settle,
    slow,
    start_pool,
    workers_used,
)

pytestmark = [pytest.mark.engine, pytest.mark.integration]


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
