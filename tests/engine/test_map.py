"""Map states, in-process: one line per item, a concurrency cap, tolerated failures, a
reducer, 1,000 items, and a map inside a parallel branch."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, FailureMode, Fork, Line, LineStatus, RunStatus

from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]
DOUBLE = {"start_at": "double", "states": {"double": {"type": "task", "handler": "test.double",
                                                      "input_path": "item", "end": True}}}


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def map_workflow(name: str, **fields: Any) -> str:
    publish({"name": name, "start_at": "each", "budgets": {"max_steps": 5000}, "states": {
        "each": {"type": "map", "items_path": "input.items", "iterator": DOUBLE, "next": "done", **fields},
        "done": {"type": "succeed", "output_path": "each"}}})
    return name


def items(count: int, failing: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"items": [{"n": i, **({"fail": True} if i in failing else {})} for i in range(count)]}


def test_a_map_runs_its_iterator_over_every_item_and_collects_in_order():
    map_workflow("doubler")
    run = drain(start_run("doubler", items(5))[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.output == [{"n": 0}, {"n": 2}, {"n": 4}, {"n": 6}, {"n": 8}]
    assert run.attempts.get(state_name="double", line__branch="3").branch_path == "each#1/3"


def test_the_concurrency_cap_limits_the_items_under_way():
    map_workflow("capped", max_concurrency=2)
    run, _ = start_run("capped", items(5))
    assert Line.objects.filter(run=run).count() == 2
    assert run.attempts.filter(status=AttemptStatus.SCHEDULED).count() == 2
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED and len(run.output) == 5
    assert Fork.objects.get(run=run).started == 5


def test_failures_within_the_tolerated_percentage_leave_them_out():
    map_workflow("tolerant", tolerated_failure_percentage=20)
    run = drain(start_run("tolerant", items(10, failing=(3, 7)))[0])
    assert run.status == RunStatus.SUCCEEDED
    assert [out["n"] for out in run.output] == [0, 2, 4, 8, 10, 12, 16, 18]


def test_more_failures_than_tolerated_fail_the_map():
    map_workflow("intolerant", tolerated_failure_percentage=20, max_concurrency=3)
    run = drain(start_run("intolerant", items(10, failing=(1, 2, 4)))[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.HANDLER_ERROR
    assert run.error["type"] == "ValueError"
    assert not Line.objects.filter(run=run, status=LineStatus.RUNNING).exists()


@pytest.mark.scale
def test_a_thousand_items_work():
    map_workflow("thousand", max_concurrency=100)
    run = drain(start_run("thousand", items(1000))[0], timeout=120)
    assert run.status == RunStatus.SUCCEEDED
    assert [out["n"] for out in run.output] == [2 * i for i in range(1000)]


def test_an_empty_list_maps_to_an_empty_list():
    map_workflow("nothing")
    assert drain(start_run("nothing", items(0))[0]).output == []


def test_items_that_are_not_a_list_fail_clearly():
    map_workflow("not_a_list")
    run = drain(start_run("not_a_list", {"items": {"n": 1}})[0])
    assert run.status == RunStatus.FAILED and run.error["type"] == "MapItems"
    assert "holds dict, not a list" in run.error["message"]


def test_a_map_inside_a_parallel_branch_works():
    publish({"name": "map_in_branch", "start_at": "fan", "budgets": {"max_steps": 100}, "states": {
        "fan": {"type": "parallel", "end": True, "branches": {
            "mapped": {"start_at": "each", "states": {"each": {"type": "map", "items_path": "input.items",
                                                               "iterator": DOUBLE, "end": True}}},
            "plain": {"start_at": "p1", "states": {"p1": {"type": "task", "handler": "demo.noop", "end": True}}}}}}})
    run = drain(start_run("map_in_branch", items(3))[0])
    assert run.status == RunStatus.SUCCEEDED
    assert run.context["fan"]["mapped"] == [{"n": 0}, {"n": 2}, {"n": 4}]
    assert run.attempts.filter(state_name="double").first().branch_path.startswith("fan#1/mapped/each#2/")
