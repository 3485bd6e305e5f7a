"""The validator on fan-outs, agents and approvals: branches and maps checked as their own
graphs, topologies' promises, agents' routes, tools and handoffs, and approval settings."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.validator import validate

from .definitions import SUCCEED, only, task

pytestmark = pytest.mark.engine


# --- parallel states --------------------------------------------------------------------------------


def parallel(*, join: dict | None = None, reducer: dict | None = None, **branches: dict) -> dict:
    state: dict[str, Any] = {"type": "parallel", "next": "done", "branches": branches}
    if join:
        state["join"] = join
    if reducer:
        state["reducer"] = reducer
    return state


def one_step(name: str, **extra: Any) -> dict:
    return {"start_at": name, "states": {name: task(end=True, **extra)}}


def test_a_parallel_state_with_valid_branches_has_no_findings(make_doc, findings_for):
    doc = make_doc(fan=parallel(a=one_step("a1"), b=one_step("b1")), done=SUCCEED)
    assert findings_for(doc) == []


def test_a_transition_out_of_its_branch_is_refused(make_doc, findings_for):
    doc = make_doc(fan=parallel(a={"start_at": "a1", "states": {"a1": task("done")}}, b=one_step("b1")),
                   done=SUCCEED)
    finding = only(findings_for(doc), "crosses_branch", "a1")
    assert "the top level" in finding.message


def test_state_names_are_unique_across_branches(make_doc, findings_for):
    doc = make_doc(fan=parallel(a=one_step("same"), b=one_step("same")), done=SUCCEED)
    finding = only(findings_for(doc), "duplicate_state", "same")
    assert "rename all but one" in finding.message


def test_a_join_asking_for_more_branches_than_there_are_is_refused(make_doc, findings_for):
    doc = make_doc(fan=parallel(a=one_step("a1"), join={"mode": "quorum", "count": 3}), done=SUCCEED)
    only(findings_for(doc), "join_count", "fan")


def test_an_unregistered_custom_reducer_is_refused(make_doc, findings_for):
    doc = make_doc(fan=parallel(a=one_step("a1"), reducer={"strategy": "custom", "handler": "nope"}), done=SUCCEED)
    assert "@reducer('nope')" in only(findings_for(doc), "unknown_reducer", "fan").message


def test_a_schema_error_inside_a_branch_names_the_branch_state(make_doc, findings_for):
    doc = make_doc(fan=parallel(a={"start_at": "a1", "states": {"a1": task(end=True, colour="red")}}), done=SUCCEED)
    finding = only(findings_for(doc), "schema", "a1")
    assert "colour" in finding.message


def test_an_unreachable_state_inside_a_branch_is_found(make_doc, findings_for):
    doc = make_doc(fan=parallel(a={"start_at": "a1", "states": {"a1": task(end=True), "a2": task(end=True)}}),
                   done=SUCCEED)
    assert "from 'a1'" in only(findings_for(doc), "unreachable", "a2").message


def test_a_pipeline_has_no_branches(make_doc, findings_for):
    doc = make_doc(fan=parallel(a=one_step("a1")), done=SUCCEED, topology="pipeline")
    assert "supervisor_worker" in only(findings_for(doc), "pipeline_branches", "fan").message


def test_a_supervisor_worker_fan_out_needs_an_explicit_reducer(make_doc, findings_for):
    doc = make_doc(fan=parallel(a=one_step("a1")), done=SUCCEED, topology="supervisor_worker")
    only(findings_for(doc), "reducer_required", "fan")
    doc = make_doc(fan=parallel(a=one_step("a1"), reducer={"strategy": "collect"}), done=SUCCEED,
                   topology="supervisor_worker")
    assert findings_for(doc) == []


def test_a_map_needs_its_items_and_iterator(make_doc, findings_for):
    doc = make_doc(each={"type": "map", "next": "done"}, done=SUCCEED)
    messages = " ".join(f.message for f in findings_for(doc))
    assert "'items_path' is a required property" in messages and "'iterator' is a required property" in messages


def test_a_map_iterator_is_checked_as_its_own_graph(make_doc, findings_for):
    doc = make_doc(each={"type": "map", "items_path": "input.items", "next": "done",
                         "iterator": {"start_at": "x", "states": {"x": task("done")}}}, done=SUCCEED)
    assert "belongs to the top level" in only(findings_for(doc), "crosses_branch", "x").message


# --- agents, handoffs, contracts ----------------------------------------------------------------


def agent(**fields: Any) -> dict[str, Any]:
    return {"type": "agent", "provider": "offline", "model": "test.router", **fields}


def test_an_agent_that_routes_may_only_name_existing_states(make_doc):
    finding = only(validate(make_doc(triage=agent(routes=["done", "nowhere"]), done=SUCCEED)),
                   "unknown_target", "triage")
    assert "'nowhere'" in finding.message


def test_an_agent_routes_or_goes_next_not_both(make_doc):
    finding = only(validate(make_doc(triage=agent(routes=["done"], next="done"), done=SUCCEED)),
                   "routes_and_next", "triage")
    assert "remove 'next'" in finding.message


def test_an_unknown_tool_or_offline_model_is_named_with_how_to_register_it(make_doc):
    findings = validate(make_doc(a=agent(model="no.such.model", tools=["no.such.tool"], end=True),
                                 budgets={"max_steps": 5}))
    assert "@tool('no.such.tool')" in only(findings, "unknown_tool", "a").message
    assert "@offline_model('no.such.model')" in only(findings, "unknown_model", "a").message


def test_an_agent_with_tools_loops_so_it_needs_a_step_budget(make_doc):
    finding = only(validate(make_doc(a=agent(tools=["test.add"], end=True))), "cycle_without_budget", "a")
    assert "budgets.max_steps" in finding.message


def test_a_handoff_must_lead_to_an_agent(make_doc):
    doc = make_doc(pass_on={"type": "handoff", "to": "done", "input": {"q": "input.q"}}, done=SUCCEED)
    assert "a handoff passes control to an agent state" in only(validate(doc), "handoff_target", "pass_on").message


def test_a_cycle_through_handoffs_is_bounded_by_the_depth_cap(make_doc):
    states = {"a": agent(routes=["to_b", "done"]), "to_b": {"type": "handoff", "to": "b", "input": {}},
              "b": agent(routes=["to_a", "done"]), "to_a": {"type": "handoff", "to": "a", "input": {}},
              "done": SUCCEED}
    assert only(validate(make_doc(**states)), "cycle_without_budget", "a")
    assert validate(make_doc(**states, budgets={"max_depth": 4})) == []


def test_a_contract_schema_that_is_not_a_json_schema_is_refused(make_doc):
    doc = make_doc(first=task(end=True, output_schema={"type": "banana"}))
    assert "output_schema is not a valid JSON Schema" in only(validate(doc), "bad_schema", "first").message


def test_an_agent_reached_by_a_handoff_takes_what_it_is_passed_not_a_mapping_of_its_own(make_doc):
    doc = make_doc(pass_on={"type": "handoff", "to": "b", "input": {"q": "input.q"}},
                   b=agent(input={"q": "input.other"}, end=True))
    assert "remove its 'input'" in only(validate(doc), "handoff_target_input", "pass_on").message


# --- approvals ------------------------------------------------------------------------------------


def test_an_approval_state_and_a_gate_are_valid(findings_for, make_doc):
    doc = make_doc(first={"type": "approval", "next": "done", "reject": "done", "due_seconds": 60,
                          "on_timeout": "escalate", "escalation": {"approvers": {"groups": ["managers"]}}},
                   done={"type": "task", "handler": "demo.noop", "end": True,
                         "requires_approval": {"editable": True, "four_eyes": False}})
    assert findings_for(doc) == []


def test_a_gate_escalating_nowhere_is_a_finding(findings_for, make_doc):
    doc = make_doc(first={"type": "task", "handler": "demo.noop", "next": "done",
                          "requires_approval": {"due_seconds": 5, "on_timeout": "escalate"}}, done=SUCCEED)
    finding = only(findings_for(doc), "approval", "first")
    assert "requires_approval: on_timeout is 'escalate' but no escalation says to whom" in finding.message
