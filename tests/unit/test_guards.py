"""Guards: structured conditions over a run's context, evaluated as data (never as code)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine import guards
from orchestrator.engine.errors import GuardError

pytestmark = pytest.mark.engine


@pytest.fixture
def context() -> dict[str, Any]:
    """A run context shaped like the engine's: step outputs keyed by state name."""
    return {
        "input": {"customer": "ACME Corp", "vip": True, "note": None},
        "validate": {"valid": True, "total": 620, "ratio": 0.5, "currency": "EUR", "code": "1"},
        "items": [
            {"sku": "A-1", "qty": 2},
            {"sku": "B-2", "qty": 0},
        ],
        "tags": ["urgent", "gift", 3],
        "empty": {},
        "nested": {"list": [[10, 20], [30]]},
    }


def cond(path: str, op: str, *value: Any) -> dict[str, Any]:
    """A leaf condition; ``value`` left out when no argument is given."""
    condition: dict[str, Any] = {"path": path, "op": op}
    if value:
        (condition["value"],) = value
    return condition


def holds(condition: dict[str, Any], data: Any) -> bool:
    """Evaluate a condition that must also pass ``check`` (as the validator requires)."""
    assert guards.check(condition) == [], guards.check(condition)
    return guards.evaluate(condition, data)


# --- eq / ne: JSON type strictness --------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        (1, 1, True),
        (1, 1.0, True),
        (0.5, 0.5, True),
        ("EUR", "EUR", True),
        (None, None, True),
        (True, True, True),
        ([1, "a"], [1, "a"], True),
        ({"a": 1}, {"a": 1}, True),
        (1, 2, False),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        ("1", 1, False),
        (1, "1", False),
        (None, 0, False),
        (None, "", False),
        ([True], [1], False),
        ({"a": True}, {"a": 1}, False),
        ([1], [1, 1], False),
    ],
)
def test_eq_keeps_json_types_apart_and_ne_is_its_negation(actual, expected, equal):
    data = {"x": actual}
    assert holds(cond("x", "eq", expected), data) is equal
    assert holds(cond("x", "ne", expected), data) is (not equal)


def test_eq_on_the_demo_guard_matches_a_boolean_output(context):
    assert holds(cond("validate.valid", "eq", True), context)
    assert not holds(cond("validate.valid", "eq", 1), context)
    assert not holds(cond("validate.code", "eq", 1), context)
    assert holds(cond("validate.code", "eq", "1"), context)


# --- ordering operators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "actual", "expected", "result"),
    [
        ("gt", 620, 500, True),
        ("gt", 500, 500, False),
        ("gte", 500, 500, True),
        ("gte", 499.99, 500, False),
        ("lt", 1, 1.5, True),
        ("lt", 2, 1.5, False),
        ("lte", 1.5, 1.5, True),
        ("lte", 1.6, 1.5, False),
        ("gt", "b", "a", True),
        ("gt", "a", "b", False),
        ("gte", "abc", "abc", True),
        ("lt", "2024-01-01", "2024-06-30", True),
        ("lte", "z", "a", False),
    ],
)
def test_ordering_operators_compare_numbers_with_numbers_and_strings_with_strings(op, actual, expected, result):
    assert holds(cond("x", op, expected), {"x": actual}) is result


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        ("10", 5),          # string vs number
        (10, "5"),          # number vs string
        (True, 0),          # a bool is not a number
        (1, False),
        (True, False),
        (None, 0),
        ([1], [0]),
        ({"a": 1}, {"a": 0}),
    ],
)
def test_ordering_operators_are_false_on_mixed_types_and_bools(op, actual, expected):
    assert holds(cond("x", op, expected), {"x": actual}) is False


# --- membership -------------------------------------------------------------------------


def test_in_and_not_in_test_membership_of_a_list(context):
    assert holds(cond("validate.currency", "in", ["USD", "EUR"]), context)
    assert not holds(cond("validate.currency", "in", ["USD", "GBP"]), context)
    assert holds(cond("validate.currency", "not_in", ["USD", "GBP"]), context)
    assert not holds(cond("validate.currency", "not_in", ["USD", "EUR"]), context)
    assert holds(cond("validate.total", "in", [620.0]), context)


@pytest.mark.parametrize(
    ("actual", "options"),
    [(True, [1, 2]), (1, [True]), (0, [False]), ("1", [1]), (None, [0, ""]), ([True], [[1]])],
)
def test_in_keeps_json_types_apart_like_eq(actual, options):
    assert holds(cond("x", "in", options), {"x": actual}) is False
    assert holds(cond("x", "not_in", options), {"x": actual}) is True


def test_contains_on_a_string_is_a_substring_test(context):
    assert holds(cond("input.customer", "contains", "ACME"), context)
    assert not holds(cond("input.customer", "contains", "acme"), context)
    assert not holds(cond("validate.code", "contains", 1), context)


def test_contains_on_a_list_is_a_strict_member_test(context):
    assert holds(cond("tags", "contains", "gift"), context)
    assert holds(cond("tags", "contains", 3), context)
    assert holds(cond("tags", "contains", 3.0), context)
    assert not holds(cond("tags", "contains", "3"), context)
    assert not holds(cond("tags", "contains", "missing"), context)
    assert not holds(cond("x", "contains", True), {"x": [1]})
    assert not holds(cond("x", "contains", 1), {"x": [True]})


def test_contains_on_an_object_tests_for_a_key(context):
    assert holds(cond("validate", "contains", "total"), context)
    assert not holds(cond("validate", "contains", "620"), context)
    assert not holds(cond("validate", "contains", 620), context)


@pytest.mark.parametrize("actual", [5, 5.5, True, None])
def test_contains_on_a_scalar_is_false(actual):
    assert holds(cond("x", "contains", 5), {"x": actual}) is False


def test_starts_with_and_ends_with_work_on_strings_only(context):
    assert holds(cond("input.customer", "starts_with", "ACME"), context)
    assert not holds(cond("input.customer", "starts_with", "Corp"), context)
    assert holds(cond("input.customer", "ends_with", "Corp"), context)
    assert not holds(cond("input.customer", "ends_with", "ACME"), context)
    assert not holds(cond("validate.total", "starts_with", "6"), context)
    assert not holds(cond("tags", "starts_with", "urgent"), context)
    assert not holds(cond("validate.code", "ends_with", 1), context)


# --- exists / is_null ------------------------------------------------------------------------


def test_exists_tells_present_from_missing_paths(context):
    assert holds(cond("validate.total", "exists"), context)
    assert holds(cond("validate.total", "exists", True), context)
    assert not holds(cond("validate.total", "exists", False), context)
    assert not holds(cond("validate.missing", "exists"), context)
    assert holds(cond("validate.missing", "exists", False), context)


def test_exists_is_true_for_a_present_null(context):
    assert holds(cond("input.note", "exists"), context)


def test_is_null_tells_null_from_other_values(context):
    assert holds(cond("input.note", "is_null"), context)
    assert holds(cond("input.note", "is_null", True), context)
    assert not holds(cond("input.note", "is_null", False), context)
    assert not holds(cond("input.customer", "is_null"), context)
    assert holds(cond("input.customer", "is_null", False), context)
    assert not holds(cond("validate.code", "is_null"), {"validate": {"code": ""}})


# --- paths -------------------------------------------------------------------------------------


def test_dotted_paths_reach_into_objects_and_lists(context):
    assert holds(cond("items.0.sku", "eq", "A-1"), context)
    assert holds(cond("items.1.qty", "eq", 0), context)
    assert holds(cond("items.-1.sku", "eq", "B-2"), context)
    assert holds(cond("nested.list.0.1", "eq", 20), context)
    assert holds(cond("nested.list.1", "eq", [30]), context)


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "validate.nope",
        "validate.total.deeper",   # into a number
        "input.customer.0",        # into a string
        "items.2.sku",             # index past the end
        "items.-3.sku",
        "items.sku",               # a key on a list
        "items.--1",               # not an index
        "items.1e0",
        "items.\u00b2",            # a unicode digit is not an index
        "empty.x",
    ],
)
def test_a_missing_path_makes_comparisons_false_and_exists_false(context, path):
    for op, value in [("eq", None), ("ne", 1), ("gt", 0), ("lt", 0), ("in", [None]), ("not_in", [1]),
                      ("contains", "x"), ("starts_with", ""), ("is_null", True), ("is_null", False)]:
        assert holds(cond(path, op, value), context) is False, (op, value)
    assert holds(cond(path, "exists"), context) is False
    assert holds(cond(path, "exists", False), context) is True


def test_get_path_returns_a_default_for_missing_paths(context):
    assert guards.get_path(context, "items.0.qty") == 2
    assert guards.get_path(context, "items.9.qty") is None
    assert guards.get_path(context, "items.9.qty", default=0) == 0
    assert guards.get_path(context, None) is context
    assert guards.get_path(context, "") is context
    assert guards.get_path(context, "input.note", default="x") is None


def test_a_context_that_is_not_an_object_makes_paths_missing():
    assert holds(cond("a", "exists", False), None)
    assert holds(cond("0", "eq", 7), [7])


# --- combinators ------------------------------------------------------------------------------


def test_all_needs_every_condition(context):
    both = {"all": [cond("validate.valid", "eq", True), cond("validate.total", "gte", 500)]}
    assert holds(both, context)
    assert not holds({"all": [*both["all"], cond("validate.total", "lt", 600)]}, context)


def test_any_needs_one_condition(context):
    assert holds({"any": [cond("validate.total", "lt", 0), cond("input.vip", "eq", True)]}, context)
    assert not holds({"any": [cond("validate.total", "lt", 0), cond("missing", "exists")]}, context)


def test_not_negates_including_a_missing_path(context):
    assert holds({"not": cond("validate.total", "lt", 100)}, context)
    assert not holds({"not": cond("validate.total", "gt", 100)}, context)
    assert holds({"not": cond("missing", "eq", 1)}, context)


def test_combinators_nest(context):
    condition = {
        "any": [
            {"all": [cond("input.vip", "eq", True), {"not": cond("validate.currency", "in", ["USD"])}]},
            cond("validate.total", "gt", 10_000),
        ]
    }
    assert holds(condition, context)
    context["input"]["vip"] = False
    assert not holds(condition, context)
    assert holds({"not": {"not": {"all": [{"any": [cond("items.0.qty", "eq", 2)]}]}}}, context)


# --- check(): malformed conditions, each problem located -------------------------------------


def test_check_accepts_well_formed_conditions():
    assert guards.check(cond("a.b", "eq", 1)) == []
    assert guards.check(cond("a", "exists")) == []
    assert guards.check(cond("a", "is_null", False)) == []
    assert guards.check({"all": [cond("a", "in", [1]), {"not": cond("b", "contains", "x")}]}) == []
    assert all(guards.check(cond("a", op, [1])) == [] for op in guards.OPERATORS if op not in
               guards.VALUE_MUST_BE_BOOL)


def test_check_reports_an_unknown_operator_and_lists_the_known_ones():
    (problem,) = guards.check(cond("a", "equals", 1), "choices[0].condition")
    assert problem.startswith("choices[0].condition: ")
    assert "unknown operator 'equals'" in problem
    assert "eq" in problem and "not_in" in problem


@pytest.mark.parametrize("op", [["eq"], {"eq": 1}, 3, None])
def test_check_reports_an_operator_that_is_not_a_string(op):
    (problem,) = guards.check({"path": "a", "op": op, "value": 1})
    assert "unknown operator" in problem


def test_check_reports_a_missing_value():
    (problem,) = guards.check(cond("a", "gt"), "where")
    assert problem == "where: operator 'gt' needs a 'value'"


@pytest.mark.parametrize("value", ["USD", None, {"a": 1}, 1])
def test_check_reports_in_without_a_list(value):
    for op in ("in", "not_in"):
        (problem,) = guards.check(cond("a", op, value))
        assert f"operator '{op}' needs a list as 'value'" in problem


@pytest.mark.parametrize("op", ["exists", "is_null"])
def test_check_reports_a_non_boolean_value_for_exists_and_is_null(op):
    (problem,) = guards.check(cond("a", op, "yes"))
    assert f"operator '{op}' takes true or false" in problem


@pytest.mark.parametrize("condition", [[], "a == 1", None, 1, True])
def test_check_reports_a_condition_that_is_not_an_object(condition):
    (problem,) = guards.check(condition, "choices[2].condition")
    assert problem.startswith("choices[2].condition: a condition must be an object, got ")


@pytest.mark.parametrize("extra", [{"path": "a"}, {"any": []}, {"op": "eq"}])
def test_check_reports_a_combinator_with_extra_keys(extra):
    (problem,) = guards.check({"all": [cond("a", "eq", 1)], **extra}, "c")
    assert problem == "c: 'all' must be the only key of its object"


@pytest.mark.parametrize("inner", [[], {}, cond("a", "eq", 1), None])
def test_check_reports_an_empty_or_non_list_all_and_any(inner):
    for key in ("all", "any"):
        assert guards.check({key: inner}, "c") == [f"c.{key}: must be a non-empty list of conditions"]


@pytest.mark.parametrize("path", [None, "", ".a", "a.", "a..b", 3, ["a"]])
def test_check_reports_a_bad_path(path):
    (problem,) = guards.check({"path": path, "op": "eq", "value": 1}, "c")
    assert problem.startswith("c: 'path' must be a dotted path")


def test_check_reports_unknown_keys_in_a_leaf():
    (problem,) = guards.check({"path": "a", "op": "eq", "value": 1, "values": [1]}, "c")
    assert "unknown key(s) ['values']" in problem


def test_check_locates_problems_deep_inside_combinators():
    condition = {
        "all": [
            cond("ok", "eq", 1),
            {"any": [cond("a", "in", "x"), {"not": cond("b", "bogus", 1)}]},
            {"not": []},
        ]
    }
    problems = guards.check(condition, "choices[1].condition")
    assert problems == [
        "choices[1].condition.all[1].any[0]: operator 'in' needs a list as 'value'",
        f"choices[1].condition.all[1].any[1].not: unknown operator 'bogus'; use one of {', '.join(guards.OPERATORS)}",
        "choices[1].condition.all[2].not: a condition must be an object, got list",
    ]


def test_check_reports_every_problem_of_a_leaf():
    problems = guards.check({"path": "", "op": "nope", "extra": 1})
    assert len(problems) == 3


def test_evaluate_refuses_an_unknown_operator():
    with pytest.raises(GuardError, match="unknown operator"):
        guards.evaluate(cond("a", "matches", ".*"), {"a": "x"})


# --- no code execution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    ["__import__('os').system('echo pwned')", "{{ 7*7 }}", "${7*7}", "lambda: 1", "1; import os"],
)
def test_values_and_paths_are_data_never_code(payload, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("guards must never evaluate code")

    import builtins

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    assert guards.check(cond("x", "eq", payload)) == []
    assert guards.evaluate(cond("x", "eq", payload), {"x": payload}) is True
    assert guards.evaluate(cond("x", "eq", payload), {"x": 49}) is False
    assert guards.evaluate(cond("x", "contains", "import"), {"x": payload}) is ("import" in payload)
    assert guards.evaluate(cond(payload, "exists"), {"x": 1}) is False
    assert guards.evaluate(cond("x", "eq", payload), {"x": "__import__"}) is False
