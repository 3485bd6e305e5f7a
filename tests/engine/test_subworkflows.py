"""Sub-workflows, in-process: a state starts a child run and waits for it (no worker held);
the child's output, usage, failure, cancellation, effects and budgets belong to the parent;
a missed settlement is found by the sweeper; the lock order parent -> child holds when both
sides move at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from orchestrator.demo import sink
from orchestrator.engine import children
from orchestrator.engine.claims import Usage
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.runs import cancel_run, start_run
from orchestrator.engine.sweeper import sweep
from orchestrator.engine.transitions import claim_attempt, complete_attempt
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Event, EventKind, FailureMode, Run, RunStatus

from ..workflows import task
from .test_transitions import drain as drain_one

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def drain(run: Run, timeout: float = 15) -> Run:
    """Play the worker for a run and every run it started."""
    return drain_one(run, timeout, every_run=True)


def race(*sides: Callable[[], Any]) -> list[BaseException]:
    """Run each side in its own thread, released together; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sides))

    def side(fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # noqa: BLE001 (returned to the test)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=side, args=(fn,)) for fn in sides]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def child_flow(name: str, *steps: tuple[str, dict[str, Any]], **top: Any) -> str:
    states = {}
    for index, (step, state) in enumerate(steps):
        states[step] = {**state, **({"next": steps[index + 1][0]} if index + 1 < len(steps) else {"end": True})}
    publish({"name": name, "start_at": steps[0][0], "states": states, **top})
    return name


def parent_flow(name: str, child: str, *, after: dict[str, Any] | None = None, **sub: Any) -> str:
    publish({"name": name, "start_at": "delegate", "states": {
        "delegate": {"type": "subworkflow", "workflow": child, "next": "after", **sub},
        "after": after or task("test.echo_input", input={"child": "delegate"}, end=True),
    }})
    return name


def child_of(run: Run) -> Run:
    return Run.objects.filter(parent=run).order_by("created_at").last()


def test_a_sub_workflow_waits_for_its_child_and_takes_its_output_and_usage():
    publish({"name": "pricing", "start_at": "quote", "states": {
        "quote": task("test.usage", args={"tokens": 30, "cost": 0.5}, next="answer"),
        "answer": {"type": "succeed"}}})
    parent, _ = start_run(parent_flow("buy", "pricing", input={"sku": "input.sku"}), {"sku": "BOOK", "card": "x"})
    run = drain(parent)
    assert run.status == RunStatus.SUCCEEDED, run.error
    child = child_of(run)
    assert child.status == RunStatus.SUCCEEDED and child.input == {"sku": "BOOK"}  # only the mapped part
    assert child.parent_attempt.state_name == "delegate" and child.depth_used == 1
    delegate = run.attempts.get(state_name="delegate")
    assert delegate.status == AttemptStatus.SUCCEEDED and delegate.lease_expires_at is None
    assert run.tokens_used == 30 and float(run.cost_used) == 0.5  # the child's usage is the parent's
    kinds = list(Event.objects.filter(run=run, attempt=delegate).values_list("kind", flat=True))
    assert EventKind.CHILD_STARTED in kinds and EventKind.CHILD_FINISHED in kinds


def test_a_waiting_sub_workflow_holds_no_worker_and_no_lease():
    child_flow("slow_child", ("nap", {"type": "wait", "seconds": 60}))
    run, _ = start_run(parent_flow("waits", "slow_child"), {})
    run_attempt(run.attempts.get(state_name="delegate").pk)
    delegate = run.attempts.get(state_name="delegate")
    assert delegate.status == AttemptStatus.WAITING and delegate.lease_expires_at is None
    assert child_of(run).status == RunStatus.RUNNING


def test_a_failed_child_fails_the_step_with_its_error_and_a_retry_starts_a_new_child():
    child_flow("flaky_child", ("boom", task("test.fail", args={"message": "no stock"})))
    name = parent_flow("retries_child", "flaky_child", retry=[{"max_attempts": 2, "interval_seconds": 0}])
    run = drain(start_run(name, {})[0])
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "ChildRunFailed" and "no stock" in run.error["message"]
    assert Run.objects.filter(parent=run).count() == 2  # one child per attempt
    assert run.attempts.filter(state_name="delegate", status=AttemptStatus.FAILED).count() == 2


def test_cancelling_the_parent_cancels_the_child_and_its_running_step():
    child_flow("long_child", ("nap", {"type": "wait", "seconds": 60}))
    run, _ = start_run(parent_flow("cancel_parent", "long_child"), {})
    run_attempt(run.attempts.get(state_name="delegate").pk)
    child = child_of(run)
    cancel_run(run.pk, reason="customer changed their mind")
    child.refresh_from_db()
    assert child.status == RunStatus.CANCELLED and "parent run stopped" in child.error["message"]
    assert not child.attempts.filter(status__in=(AttemptStatus.SCHEDULED, AttemptStatus.RUNNING)).exists()
    assert run.attempts.get(state_name="delegate").status == AttemptStatus.CANCELLED


def test_the_parents_saga_undoes_the_childs_confirmed_effects():
    child_flow("charging_child", ("charge", task("test.charge_with_compensation", args={"key": "child-charge"})))
    name = parent_flow("saga_parent", "charging_child", after=task("test.fail", end=True))
    run = drain(start_run(name, {})[0])
    assert run.status == RunStatus.FAILED
    effect = child_of(run).effects.get()
    assert effect.status == "compensated"
    assert sink.deliveries(f"{effect.idempotency_key}-undo") == 1


def test_a_child_runs_within_what_is_left_of_the_parents_token_budget():
    child_flow("greedy_child", ("spend", task("test.usage", args={"tokens": 80})),
               ("spend_more", task("test.usage", args={"tokens": 80})))
    publish({"name": "frugal", "start_at": "warm_up", "budgets": {"max_tokens": 100}, "states": {
        "warm_up": task("test.usage", args={"tokens": 50}, next="delegate"),
        "delegate": {"type": "subworkflow", "workflow": "greedy_child", "end": True}}})
    run = drain(start_run("frugal", {})[0])
    child = child_of(run)
    assert child.budget_caps["max_tokens"] == 50
    assert child.status == RunStatus.FAILED and child.failure_mode == FailureMode.COST_EXPLOSION
    assert not child.attempts.filter(state_name="spend_more").exists()  # stopped at 80 > 50
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION


def test_a_workflow_that_starts_itself_stops_at_the_depth_cap():
    publish({"name": "recursive", "start_at": "again", "budgets": {"max_depth": 3}, "states": {
        "again": {"type": "subworkflow", "workflow": "recursive", "end": True}}})
    run = drain(start_run("recursive", {})[0], timeout=30)
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.COST_EXPLOSION
    depths = sorted(Run.objects.filter(workflow__name="recursive").values_list("depth_used", flat=True))
    assert depths == [0, 1, 2, 3]
    deepest = Run.objects.get(workflow__name="recursive", depth_used=3)
    assert deepest.error["type"] == "DepthExceeded"


def test_the_sweeper_settles_a_parent_whose_child_ended_unnoticed(monkeypatch):
    monkeypatch.setattr(children, "settle_soon", lambda child_id: None)  # the worker died after the commit
    child_flow("quick_child", ("answer", task("test.answer", args={"output": 7})))
    run, _ = start_run(parent_flow("unnoticed", "quick_child"), {})
    run_attempt(run.attempts.get(state_name="delegate").pk)
    child = drain_one(child_of(run))
    assert child.status == RunStatus.SUCCEEDED
    assert run.attempts.get(state_name="delegate").status == AttemptStatus.WAITING
    assert sweep().children_settled == 1
    run = drain(run)
    assert run.status == RunStatus.SUCCEEDED and run.output == {"received": {"child": 7}}


def test_an_unknown_workflow_is_a_validation_finding_naming_the_state():
    from orchestrator.engine.validator import validate

    findings = validate({"name": "orphan", "start_at": "delegate", "states": {
        "delegate": {"type": "subworkflow", "workflow": "does_not_exist", "end": True}}})
    assert [(f.code, f.state) for f in findings] == [("unknown_workflow", "delegate")]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks between threads need PostgreSQL")
def test_cancelling_the_parent_while_the_child_completes_never_deadlocks():
    """All at once, twenty times: the parent's cancel locks parent then child; the child's
    checkpoint locks the child alone, then settles (parent then child); a settlement that looks
    while the child still runs takes the same order. None may fail (a reversed order deadlocks)."""
    child_flow("racing_child", ("answer", task("test.answer", args={"output": 1})))
    parent_flow("racing_parent", "racing_child")
    for _ in range(20):
        run, _ = start_run("racing_parent", {})
        run_attempt(run.attempts.get(state_name="delegate").pk)
        child = child_of(run)
        claim = claim_attempt(child.attempts.get().pk, "w1")
        errors = race(lambda: cancel_run(run.pk),  # noqa: B023 (the race runs before the loop moves on)
                      lambda: complete_attempt(claim, 1, Usage()),  # noqa: B023
                      lambda: children.settle_child(child.pk))  # noqa: B023 (a sweeper that looks early)
        assert not errors, errors
        run.refresh_from_db()
        child.refresh_from_db()
        assert run.status == RunStatus.CANCELLED
        delegate = run.attempts.get(state_name="delegate")
        # Either the cancel came first (the child is cancelled with the waiting step), or the
        # child finished and settled first (its output taken, then the parent cancelled).
        assert (child.status, delegate.status) in {(RunStatus.CANCELLED, AttemptStatus.CANCELLED),
                                                   (RunStatus.SUCCEEDED, AttemptStatus.CANCELLED),
                                                   (RunStatus.SUCCEEDED, AttemptStatus.SUCCEEDED)}


def test_a_child_input_that_breaks_the_child_workflows_input_schema_fails_as_context_loss():
    publish({"name": "strict_child", "start_at": "done", "input_schema": {"type": "object", "required": ["sku"]},
             "sample_input": {"sku": "X"}, "states": {"done": {"type": "succeed"}}})
    run = drain(start_run(parent_flow("sloppy_parent", "strict_child", input={"item": "input.sku"}), {"sku": "B"})[0])
    assert run.status == RunStatus.FAILED and run.failure_mode == FailureMode.CONTEXT_LOSS
    assert "sku: is required" in run.error["message"]
    assert not Run.objects.filter(parent=run).exists()  # no child was started
