"""Dry runs: the path through choices, routes, approvals, failures, branches and their reducer,
with stubbed outputs and nothing run; and the dry run on the editor page, marked on the graph."""

from __future__ import annotations

import re

import pytest

from designer.dryrun import dry_run
from orchestrator.engine.validator import validate

from .pages import post

pytestmark = pytest.mark.django_db

REFUND = {
    "name": "refund", "budgets": {"max_steps": 50}, "start_at": "check",
    "states": {
        "check": {"type": "task", "handler": "demo.noop", "next": "route",
                  "catch": [{"errors": ["*"], "next": "apologise"}]},
        "route": {"type": "choice", "default": "pay", "choices": [
            {"condition": {"path": "check.score", "op": "gt", "value": 0.8}, "next": "review"},
            {"condition": {"path": "input.vip", "op": "eq", "value": True}, "next": "pay"}]},
        "review": {"type": "approval", "title": "Refund?", "reject": "apologise", "next": "pay",
                   "outcomes": {"ask_more": "check"}},
        "pay": {"type": "task", "handler": "demo.noop", "next": "done"},
        "apologise": {"type": "task", "handler": "demo.noop", "next": "closed"},
        "closed": {"type": "fail", "error": "Refused"},
        "done": {"type": "succeed"},
    },
}
FAN = {
    "name": "fan", "start_at": "research", "states": {
        "research": {"type": "parallel", "next": "done", "reducer": {"strategy": "highest_score",
                                                                   "on_conflict": "error"},
                     "branches": {
                         "a": {"start_at": "a1", "states": {"a1": {"type": "task", "handler": "demo.noop",
                                                                   "end": True}}},
                         "b": {"start_at": "b1", "states": {"b1": {"type": "task", "handler": "demo.noop",
                                                                   "end": True}}}}},
        "done": {"type": "succeed"}},
}


def test_the_definitions_are_valid():
    assert validate(REFUND) == [] and validate(FAN) == []


def path(result) -> list[str]:
    return [step.state for step in result.steps]


def test_a_guard_on_a_stubbed_output_chooses_the_path():
    result = dry_run(REFUND, {"vip": False}, stubs={"check": {"score": 0.9}})
    assert result.outcome == "succeeded" and path(result) == ["check", "route", "review", "pay", "done"]
    assert "rule 1 holds: goes to review" in result.steps[1].what
    assert "decided: approve (force another outcome)" in result.steps[2].what


def test_forced_outcomes_and_failures_follow_their_transitions():
    rejected = dry_run(REFUND, {}, stubs={"check": {"score": 0.9}}, forced={"review": "reject"})
    assert path(rejected)[-2:] == ["apologise", "closed"] and rejected.outcome == "failed"
    assert "closed fails the run (Refused)" in rejected.reason
    failed = dry_run(REFUND, {}, forced={"check": "fail"})
    assert path(failed) == ["check", "apologise", "closed"] and "catch rule for * leads to apologise" in \
        failed.steps[0].what


def test_a_guard_on_a_missing_path_says_so_and_the_default_is_taken():
    result = dry_run(REFUND, {})
    assert path(result) == ["check", "route", "pay", "done"]
    assert any("reads check.score, which does not exist" in w for w in result.warnings)
    assert "no rule holds: the default, pay" in result.steps[1].what


def test_a_loop_the_stubs_never_leave_is_stopped():
    result = dry_run(REFUND, {}, stubs={"check": {"score": 0.9}}, forced={"review": "ask_more"})
    assert result.outcome == "stopped" and "loop" in result.reason


def test_branches_run_and_the_reducer_merges_them_as_the_engine_would():
    result = dry_run(FAN, {}, stubs={"a1": {"score": 0.2, "text": "a"}, "b1": {"score": 0.7, "text": "b"}})
    assert result.outcome == "succeeded" and result.steps[0].what == "runs 2 branch(es): a, b"
    joined = next(step for step in result.steps if step.what.startswith("joins"))
    assert joined.output == {"score": 0.7, "text": "b"}
    assert [s.branch for s in result.steps if s.state in ("a1", "b1")] == ["research/a", "research/b"]
    tie = dry_run(FAN, {}, stubs={"a1": {"score": 0.5}, "b1": {"score": 0.5, "x": 1}})
    assert tie.outcome == "failed" and "conflict" in tie.reason


def test_the_dry_run_on_the_editor_marks_its_path_on_the_graph(designer):
    from designer.drafts import create_draft
    from designer.source import dump

    create_draft("refund", dump(REFUND, "yaml"), "yaml")
    response = post(designer, "dry_run", draft="refund", input='{"vip": true}', stubs='{"check": {"score": 0.1}}',
                    forced="{}")
    html = response.content.decode()
    assert response.status_code == 200 and "dry run: succeeded" in html
    assert "rule 2 holds: goes to pay" in html
    assert re.search(r'<g id="state_pay" class="[^"]*status_visited', html)
    assert not re.search(r'<g id="state_review" class="[^"]*status_visited', html)
    bad = post(designer, "dry_run", draft="refund", input="{oops", stubs="[]", forced="{}")
    text = bad.content.decode()
    assert bad.status_code == 400 and "the input is not JSON" in text and "the stubs must be an object" in text


def test_a_stub_set_in_the_panel_is_what_the_dry_run_uses(designer):
    from designer.drafts import create_draft
    from designer.source import dump

    create_draft("refund", dump(REFUND, "yaml"), "yaml")
    html = post(designer, "set_stub", draft="refund", state="check", stub='{"score": 0.95}').content.decode()
    assert "check returns this in your dry runs" in html and "&quot;score&quot;: 0.95" in html
    assert post(designer, "set_stub", draft="refund", state="check", stub="{nope").status_code == 400
    page = designer.get("/designer/refund/").content.decode()
    stubs = re.search(r'<textarea name="stubs"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert "&quot;check&quot;" in stubs and "0.95" in stubs
    result = post(designer, "dry_run", draft="refund", input="{}", stubs='{"check": {"score": 0.95}}', forced="{}")
    assert "rule 1 holds: goes to review" in result.content.decode()
