"""Failure modes where real workers race: a budget exhausted mid-fan-out (no attempt scheduled
after the run failed, the other branches cancelled), contract violations (context loss) at
every boundary, model routes refused and never followed, and a branch paused on an uncertain
effect while its siblings finish, then resumed by an operator's decision."""

from __future__ import annotations

import pytest

from orchestrator.demo import sink
from orchestrator.engine.dispatch import job_id
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
)

from ..conftest import wait_for
from ..workflows import task
from .real_workers import (
    agent,
    answer,
    assert_quiet,
    branch,
    contracted,
    count,
    events,
    fan_out,
    peers,
    routed,
    settle,
    slow,
    start_pool,
)

pytestmark = [pytest.mark.engine, pytest.mark.integration]


# --- budgets exhausted mid-fan-out ------------------------------------------------------------------


def test_a_budget_exhausted_mid_fan_out_fails_the_run_cancels_the_branches_and_schedules_nothing_more(
        workers, sink_path, redis_conn):
    """Tokens in a parallel state (a sibling still running on the other worker, another waiting
    on a timer), cost in a map, steps in a map: each run fails as cost_explosion, once."""
    fan_out("bx_tokens", {
        "burn": branch(("burn_nap", task("test.after_execution_of", args={"state": "slow_1"})),
                       ("burn_spend", task("test.usage", args={"tokens": 600}))),
        "slow": branch(("slow_1", slow({"done": 1}, 4.0)), ("slow_2", slow({"done": 2}, 0))),
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
    # Both workers busy in the fan-out: burn_nap waits until slow_1 runs on the other worker, so
    # slow_1 is running when burn_spend breaks the budget, however slowly the machine starts it.
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
    assert run.attempts.get(state_name="burn_nap").output == {"waited_for": "slow_1", "seen": True}
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
