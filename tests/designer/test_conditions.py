"""The condition builder: guards as rows and back, the paths it offers, and rules saved through
the page (rows added and removed without saving, problems shown, nothing saved until valid)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from designer import conditions, source
from designer.conditions import Row
from designer.models import Draft
from orchestrator.engine.guards import evaluate

from .pages import post, revision

pytestmark = pytest.mark.django_db

ROUTER = """\
name: router
input_schema:
  type: object
  properties: {amount: {type: number}, country: {type: string}}
start_at: check
states:
  check:
    type: task
    handler: demo.noop
    output_schema: {type: object, properties: {risk: {type: number}}}
    next: route
  route:
    type: choice
    choices:
      - condition: {path: input.amount, op: gt, value: 100}
        next: review
      - condition: {any: [{all: [{path: a, op: eq, value: 1}]}]}
        next: done
    default: done
  review:
    type: task
    handler: demo.noop
    next: done
  done:
    type: succeed
"""


@pytest.mark.parametrize("condition", [
    {"path": "input.amount", "op": "gt", "value": 100},
    {"not": {"path": "check.risk", "op": "lte", "value": 0.5}},
    {"any": [{"path": "input.country", "op": "in", "value": ["FR", "DE"]},
             {"not": {"path": "check.flag", "op": "exists", "value": True}}]},
    {"all": [{"path": "input.note", "op": "eq", "value": "urgent"}, {"path": "input.n", "op": "eq", "value": "42"}]},
])
def test_a_guard_of_one_group_goes_to_rows_and_back_unchanged(condition):
    mode, rows = conditions.to_rows(condition)
    rebuilt, problems = conditions.from_rows(mode, rows)
    assert problems == [] and rebuilt == condition


def test_a_guard_with_groups_inside_groups_is_left_to_json():
    assert conditions.to_rows({"any": [{"all": [{"path": "a", "op": "eq", "value": 1}]}]}) is None


def test_rows_make_a_guard_that_evaluates_as_typed():
    condition, problems = conditions.from_rows("all", [Row("input.amount", "gte", "100"),
                                                       Row("input.country", "in", '["FR", "DE"]'),
                                                       Row("input.note", "eq", "needs review", negate=True)])
    assert problems == []
    context = {"input": {"amount": 120, "country": "FR", "note": "fine"}}
    assert evaluate(condition, context) is True
    assert evaluate(condition, {"input": {**context["input"], "amount": 99}}) is False


@pytest.mark.parametrize("rows, message", [
    ([Row("", "eq", "1")], "'path' must be a dotted path"),
    ([Row("input.x", "in", "3")], "needs a list"),
    ([], "at least one condition"),
])
def test_bad_rows_say_what_is_wrong(rows, message):
    condition, problems = conditions.from_rows("all", rows)
    assert condition is None and any(message in p for p in problems), problems


def test_the_paths_offered_are_the_input_and_what_ran_before():
    doc = source.load(ROUTER, "yaml")
    assert conditions.context_paths(doc, "route") == ["input", "input.amount", "input.country", "check",
                                                      "check.risk"]
    assert "review" in conditions.context_paths(doc, "done")
    assert conditions.context_paths(doc, "check") == ["input", "input.amount", "input.country"]


# --- through the page -------------------------------------------------------------------------


@pytest.fixture
def router(designer):
    from designer.drafts import create_draft

    create_draft("router", ROUTER, "yaml")
    return designer


def test_the_panel_lists_a_choices_rules_in_words_and_opens_one_in_the_builder(router):
    html = router.get(reverse("designer:editor", args=["router"]), {"state": "route"}).content.decode()
    assert "input.amount &gt; 100" in html and 'id="add-rule"' in html
    assert 'id="rule-builder"' not in html
    html = router.get(reverse("designer:editor", args=["router"]), {"state": "route", "rule": 0}).content.decode()
    assert 'id="rule-builder"' in html and 'value="input.amount"' in html and '<option value="check.risk">' in html
    nested = router.get(reverse("designer:editor", args=["router"]), {"state": "route", "rule": 1}).content.decode()
    assert 'id="nested-rule"' in nested and 'id="rule-builder"' not in nested


def builder_post(client, **data):
    base = {"state": "route", "rule": "2", "mode": "any", "rows": "1", "path_0": "check.risk", "op_0": "gt",
            "value_0": "0.8", "target": "review", "action": "save"}
    return post(client, "save_rule", draft="router", **{**base, **data})


def test_rows_are_added_and_removed_without_saving(router):
    html = builder_post(router, action="add_row").content.decode()
    assert html.count('class="rule-row"') == 2 and revision("router") == 1
    html = builder_post(router, rows="2", path_1="input.country", op_1="eq", value_1="FR",
                        action="remove_0").content.decode()
    assert html.count('class="rule-row"') == 1 and 'value="input.country"' in html and revision("router") == 1


def test_a_new_rule_is_saved_and_a_bad_one_is_refused_with_its_problems(router):
    bad = builder_post(router, value_0="", op_0="in", target="")
    html = bad.content.decode()
    assert bad.status_code == 400 and 'id="rule-problems"' in html and "choose the state" in html
    assert revision("router") == 1
    good = builder_post(router, rows="2", path_1="input.country", op_1="eq", value_1="FR", not_1="on")
    assert good.status_code == 200 and "added rule 3 to route" in good.content.decode()
    doc = source.parse(Draft.objects.get(name="router").revisions.get(number=2).source, "yaml")
    assert doc["states"]["route"]["choices"][2] == {
        "condition": {"any": [{"path": "check.risk", "op": "gt", "value": 0.8},
                              {"not": {"path": "input.country", "op": "eq", "value": "FR"}}]},
        "next": "review"}


def test_a_rule_is_changed_in_place_and_deleted(router):
    builder_post(router, rule="0", mode="all", path_0="input.amount", op_0="gte", value_0="500")
    doc = source.parse(Draft.objects.get(name="router").revisions.get(number=2).source, "yaml")
    assert doc["states"]["route"]["choices"][0]["condition"] == {"path": "input.amount", "op": "gte", "value": 500}
    post(router, "delete_rule", draft="router", state="route", rule="0")
    doc = source.parse(Draft.objects.get(name="router").revisions.get(number=3).source, "yaml")
    assert len(doc["states"]["route"]["choices"]) == 1
