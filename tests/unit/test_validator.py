"""The definition validator: JSON Schema first, then semantic findings that name their state
and say how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.demo import WORKFLOWS_DIR
from orchestrator.engine.definition import Definition
from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.registry import handler_names
from orchestrator.engine.retry import RetryRule
from orchestrator.engine.schema import BUILT_STATE_TYPES
from orchestrator.engine.validator import Finding, parse_definition, validate

from .definitions import SUCCEED, choice, only, task, wait, when

pytestmark = pytest.mark.engine

DEMO_FILES = sorted(WORKFLOWS_DIR.glob("*.yaml"))


# --- the demo workflows --------------------------------------------------------------------------


def test_the_demo_handlers_are_registered_at_start_up():
    assert {"demo.noop", "demo.validate_order", "demo.always_fails", "demo.send_reminder"} <= handler_names()


@pytest.mark.parametrize("path", DEMO_FILES, ids=lambda p: p.stem)
def test_every_demo_workflow_validates_without_findings(path: Path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert validate(doc) == []
    definition = parse_definition(doc)
    assert isinstance(definition, Definition)
    assert definition.start_at in definition.states


def test_the_demo_workflows_are_there():
    assert [p.stem for p in DEMO_FILES] == ["drafted_reply", "follow_up", "noop_chain", "order_assistant",
                                            "order_fulfilment", "partner_lookup", "refund", "research",
                                            "summarise_document", "support_network"]


def test_order_fulfilment_parses_to_typed_states():
    doc = yaml.safe_load((WORKFLOWS_DIR / "order_fulfilment.yaml").read_text(encoding="utf-8"))
    definition = parse_definition(doc)
    assert definition.budgets.max_steps == 30
    assert definition.timeout_seconds == 900
    reserve = definition.state("reserve")
    assert reserve.retry == (RetryRule(errors=("TransientInventoryError",), max_attempts=4, interval_seconds=0.2,
                                       backoff_rate=2.0),)
    assert definition.state("pack").queue == "slow"
    assert definition.state("is_valid").default == "rejected"
    assert definition.state("done").is_terminal


def test_a_valid_small_definition_has_no_findings(findings_for, valid_doc):
    assert findings_for(valid_doc) == []


# --- non-dict documents and parse_definition ------------------------------------------------------


@pytest.mark.parametrize(("doc", "kind"), [([], "list"), ("start_at: a", "str"), (None, "NoneType"), (3, "int")])
def test_a_document_that_is_not_an_object_gets_a_clear_finding(findings_for, doc, kind):
    (finding,) = findings_for(doc)
    assert finding.code == "schema"
    assert finding.message == f"a definition must be an object, got {kind}"


def test_parse_definition_raises_definition_error_carrying_the_findings(make_doc):
    doc = make_doc(first=task("nowhere"), done=SUCCEED)
    with pytest.raises(DefinitionError) as raised:
        parse_definition(doc)
    error = raised.value
    assert [f.code for f in error.findings] == ["unknown_target"]
    assert all(isinstance(f, Finding) for f in error.findings)
    assert error.code == "R100"
    assert "state 'first': transitions to 'nowhere'" in str(error)


def test_parse_definition_of_a_non_object_raises(make_doc):
    with pytest.raises(DefinitionError, match="must be an object, got list") as raised:
        parse_definition([make_doc(first=SUCCEED)])
    assert raised.value.findings[0].code == "schema"


def test_definition_error_summarises_at_most_five_findings(make_doc):
    doc = make_doc(**{f"s{i}": task(f"missing{i}") for i in range(7)})
    with pytest.raises(DefinitionError) as raised:
        parse_definition(doc)
    assert len(raised.value.findings) == 7
    assert str(raised.value).endswith("(and 2 more)")


def test_parse_definition_uses_known_handlers_when_given(make_doc):
    doc = make_doc(first=task(end=True, handler="custom.step"))
    assert parse_definition(doc, known_handlers={"custom.step"}).state("first").handler == "custom.step"
    with pytest.raises(DefinitionError):
        parse_definition(doc, known_handlers={"demo.noop"})


def test_finding_renders_its_state_and_as_a_dict():
    finding = Finding("dead_end", "add a transition", "pack")
    assert str(finding) == "state 'pack': add a transition"
    assert str(Finding("schema", "add it")) == "add it"
    assert finding.as_dict() == {"code": "dead_end", "state": "pack", "severity": "error",
                                 "message": "add a transition"}


# --- schema findings -----------------------------------------------------------------------------


def test_an_unknown_state_property_is_a_schema_finding_on_that_state(findings_for, make_doc):
    doc = make_doc(first={**task(end=True), "nxt": "done"})
    finding = only(findings_for(doc), "schema", "first")
    assert "'nxt' was unexpected" in finding.message
    assert "remove it, or check its spelling" in finding.message


def test_an_unknown_top_level_property_is_a_schema_finding(findings_for, make_doc):
    doc = {**make_doc(first=SUCCEED), "start": "first"}
    finding = only(findings_for(doc), "schema", None)
    assert "'start' was unexpected" in finding.message
    assert "remove it, or check its spelling" in finding.message


def test_a_task_without_a_handler_is_a_schema_finding(findings_for, make_doc):
    doc = make_doc(first={"type": "task", "end": True})
    finding = only(findings_for(doc), "schema", "first")
    assert "'handler' is a required property" in finding.message
    assert "(add it)" in finding.message


def test_a_missing_start_at_is_a_schema_finding(findings_for):
    finding = only(findings_for({"states": {"a": SUCCEED}}), "schema", None)
    assert "'start_at' is a required property (add it)" in finding.message


def test_a_bad_state_name_is_a_schema_finding_naming_that_state(findings_for, make_doc):
    doc = make_doc(first=task("bad-name"), **{"bad-name": SUCCEED})
    finding = only(findings_for(doc), "schema", "bad-name")
    assert "rename it" in finding.message


def test_an_unknown_state_type_is_a_schema_finding_listing_the_types(findings_for, make_doc):
    doc = make_doc(first={"type": "sleep", "seconds": 1})
    finding = only(findings_for(doc), "schema", "first")
    assert f"use one of {', '.join(BUILT_STATE_TYPES)}" in finding.message


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (wait(end=True, seconds="ten"), "seconds"),
        (task(end="yes"), "end"),
        (task(end=True, retry=[{"max_attempts": "3"}]), "retry.0.max_attempts"),
        (task(end=True, args=["a"]), "args"),
        (choice((when(), "first"), default=7), "default"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_schema_finding_on_its_field(findings_for, make_doc, state, field):
    finding = only(findings_for(make_doc(first=state)), "schema", "first")
    assert finding.message.startswith(f"{field}: ")
    assert "is not of type" in finding.message
    assert "(fix the value)" in finding.message


def test_an_empty_states_object_is_a_schema_finding(findings_for):
    finding = only(findings_for({"start_at": "a", "states": {}}), "schema", None)
    assert finding.message.startswith("states: ")


def test_schema_findings_stop_before_semantic_checks(findings_for, make_doc):
    doc = make_doc(first={**task("nowhere"), "oops": 1})
    assert [f.code for f in findings_for(doc)] == ["schema"]


# --- semantic findings ---------------------------------------------------------------------------


def test_a_start_at_that_is_not_a_state_is_unknown_start(findings_for, make_doc):
    doc = make_doc(start_at="begin", first=task("done"), done=SUCCEED)
    finding = only(findings_for(doc), "unknown_start", None)
    assert "start_at names 'begin', which is not a state" in finding.message
    assert "set it to one of first, done" in finding.message


@pytest.mark.parametrize(
    "state",
    [
        task("nowhere"),
        choice((when(), "nowhere"), default="done"),
        choice((when(), "done"), default="nowhere"),
        task("done", catch=[{"errors": ["*"], "next": "nowhere"}]),
        wait("nowhere", seconds=1),
    ],
    ids=["next", "choice_next", "default", "catch_next", "wait_next"],
)
def test_a_transition_to_a_missing_state_is_unknown_target(findings_for, make_doc, state):
    finding = only(findings_for(make_doc(first=state, done=SUCCEED)), "unknown_target", "first")
    assert "transitions to 'nowhere', which is not a state" in finding.message
    assert "add that state or point the transition at an existing one" in finding.message


@pytest.mark.parametrize("build", [task, wait], ids=["task", "wait"])
def test_next_and_end_together_is_a_finding(findings_for, make_doc, build):
    extra = {"seconds": 1} if build is wait else {}
    doc = make_doc(first=build("done", end=True, **extra), done=SUCCEED)
    finding = only(findings_for(doc), "next_and_end", "first")
    assert "keep one" in finding.message


@pytest.mark.parametrize("build", [task, wait], ids=["task", "wait"])
def test_a_state_with_neither_next_nor_end_is_a_dead_end(findings_for, make_doc, build):
    extra = {"seconds": 1} if build is wait else {}
    finding = only(findings_for(make_doc(first=build(**extra))), "dead_end", "first")
    assert "add a transition or end the run here" in finding.message


def test_end_false_without_next_is_still_a_dead_end(findings_for, make_doc):
    only(findings_for(make_doc(first=task(end=False))), "dead_end", "first")


def test_an_unregistered_handler_is_named_with_how_to_register_it(findings_for, make_doc):
    doc = make_doc(first=task(end=True, handler="billing.charge_card"))
    finding = only(findings_for(doc), "unknown_handler", "first")
    assert "handler 'billing.charge_card' is not registered" in finding.message
    assert "@handler('billing.charge_card')" in finding.message
    assert "demo." in finding.message  # suggests known handlers


def test_unknown_handler_says_when_none_is_registered(make_doc):
    (finding,) = validate(make_doc(first=task(end=True, handler="x.y")), known_handlers=set())
    assert finding.code == "unknown_handler"
    assert "none registered" in finding.message


@pytest.mark.parametrize("durations", [{}, {"seconds": 1, "seconds_path": "input.delay"}], ids=["neither", "both"])
def test_a_wait_needs_exactly_one_duration(findings_for, make_doc, durations):
    doc = make_doc(first=wait("done", **durations), done=SUCCEED)
    finding = only(findings_for(doc), "wait_duration", "first")
    assert "exactly one of 'seconds' or 'seconds_path'" in finding.message


@pytest.mark.parametrize("durations", [{"seconds": 0}, {"seconds_path": "input.delay"}])
def test_a_wait_with_one_duration_is_fine(findings_for, make_doc, durations):
    assert findings_for(make_doc(first=wait("done", **durations), done=SUCCEED)) == []


def test_a_choice_without_default_is_a_finding(findings_for, make_doc):
    doc = make_doc(first=choice((when(), "done")), done=SUCCEED)
    finding = only(findings_for(doc), "choice_without_default", "first")
    assert "add \"default\": \"<state>\"" in finding.message


def test_a_malformed_guard_is_a_bad_guard_located_by_choice_index(findings_for, make_doc):
    doc = make_doc(first=choice((when(), "done"), (when(op="equals"), "done"), default="done"), done=SUCCEED)
    finding = only(findings_for(doc), "bad_guard", "first")
    assert finding.message.startswith("choices[1].condition: unknown operator 'equals'")
    assert "use one of eq" in finding.message


def test_each_problem_of_a_guard_is_its_own_finding(findings_for, make_doc):
    bad = {"all": [when(op="in", value="x"), {"path": "", "op": "eq", "value": 1}]}
    doc = make_doc(first=choice((bad, "done"), default="done"), done=SUCCEED)
    found = findings_for(doc)
    assert [(f.code, f.state) for f in found] == [("bad_guard", "first"), ("bad_guard", "first")]
    assert found[0].message.startswith("choices[0].condition.all[0]: operator 'in' needs a list")
    assert found[1].message.startswith("choices[0].condition.all[1]: 'path' must be a dotted path")


def test_a_guard_with_a_non_string_operator_is_a_bad_guard_not_a_crash(findings_for, make_doc):
    doc = make_doc(first=choice(({"path": "a", "op": ["eq"], "value": 1}, "done"), default="done"), done=SUCCEED)
    only(findings_for(doc), "bad_guard", "first")


def test_a_state_no_transition_leads_to_is_unreachable(findings_for, make_doc):
    doc = make_doc(first=task("done"), done=SUCCEED, orphan=task("done"))
    finding = only(findings_for(doc), "unreachable", "orphan")
    assert "no transition leads here from 'first'" in finding.message
    assert "connect it or delete it" in finding.message


def test_states_reached_only_through_catch_are_reachable(findings_for, make_doc):
    doc = make_doc(first=task("done", catch=[{"next": "recover"}]), recover=task(end=True), done=SUCCEED)
    assert findings_for(doc) == []


def test_a_loop_with_no_exit_is_no_way_out_for_each_state_in_it(findings_for, make_doc):
    doc = make_doc(budgets={"max_steps": 10}, first=task("second"), second=task("first"))
    found = findings_for(doc)
    assert [f.state for f in found] == ["first", "second"]  # in definition order, every time
    for finding in found:
        assert finding.code == "no_way_out"
        assert "add a transition out of the loop" in finding.message


def test_states_leading_into_a_trap_have_no_way_out_either(findings_for, make_doc):
    doc = make_doc(budgets={"max_steps": 10}, first=task("spin"), spin=wait("spin", seconds=1))
    assert sorted(f.state for f in findings_for(doc)) == ["first", "spin"]


def test_a_loop_with_an_exit_has_a_way_out(findings_for, make_doc):
    doc = make_doc(budgets={"max_steps": 10}, first=task("check"),
                   check=choice((when(), "done"), default="first"), done=SUCCEED)
    assert findings_for(doc) == []


@pytest.fixture
def looping_doc(make_doc) -> dict[str, Any]:
    """A retry loop with an exit: work -> check -> (done | work)."""
    return make_doc(first=task("work"), work=task("check"), check=choice((when(), "done"), default="work"),
                    done=SUCCEED)


def test_a_cycle_without_a_step_budget_is_a_finding(findings_for, looping_doc):
    finding = only(findings_for(looping_doc), "cycle_without_budget", "work")
    assert "set budgets.max_steps" in finding.message


def test_a_step_budget_clears_the_cycle_finding(findings_for, looping_doc):
    assert findings_for({**looping_doc, "budgets": {"max_steps": 50}}) == []


def test_other_budgets_do_not_clear_the_cycle_finding(findings_for, looping_doc):
    found = findings_for({**looping_doc, "budgets": {"max_tokens": 1000}})
    assert [f.code for f in found] == ["cycle_without_budget"]


def test_a_self_loop_is_a_cycle(findings_for, make_doc):
    doc = make_doc(poll=task("poll", catch=[{"next": "done"}]), done=SUCCEED)
    only(findings_for(doc), "cycle_without_budget", "poll")


def test_a_cycle_among_unreachable_states_is_reported_as_unreachable_only(findings_for, make_doc):
    doc = make_doc(first=task("done"), done=SUCCEED, a=task("b"), b=choice((when(), "a"), default="done"))
    assert sorted((f.code, f.state) for f in findings_for(doc)) == [("unreachable", "a"), ("unreachable", "b")]


def test_a_long_pipeline_validates(findings_for, make_doc):
    states = {f"s{i}": task(f"s{i + 1}") for i in range(1500)}
    states["s1500"] = SUCCEED
    assert findings_for(make_doc(**states)) == []


def test_every_semantic_finding_names_a_state_and_how_to_fix_it(findings_for, make_doc):
    doc = make_doc(
        first=task("missing"),
        both=task("first", end=True),
        stuck=task(),
        unknown=task(end=True, handler="nope.nope"),
        pause=wait("first"),
        pick=choice(({"path": "a"}, "first")),
    )
    found = findings_for(doc)
    assert {f.code for f in found} == {"unknown_target", "next_and_end", "dead_end", "unknown_handler",
                                       "wait_duration", "choice_without_default", "bad_guard"}
    fixes = ("add", "keep one", "register", "use", "set", "connect", "exactly one")
    for finding in found:
        assert finding.state in doc["states"], finding
        assert any(word in finding.message for word in fixes), finding


def test_a_network_of_agents_needs_a_depth_cap(make_doc):
    doc = make_doc(first=task("done"), done=SUCCEED, topology="network")
    finding = only(validate(doc), "depth_cap_required", None)
    assert "budgets.max_depth" in finding.message
    assert not validate({**doc, "budgets": {"max_depth": 3}})
