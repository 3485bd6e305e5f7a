"""Guards: structured conditions over a run's context. Data, never code (no eval).

A condition is one of::

    {"path": "validate.total", "op": "gt", "value": 100}
    {"all": [cond, ...]}   {"any": [cond, ...]}   {"not": cond}

Paths are dotted keys into the context; a numeric segment indexes a list. A missing path
makes a comparison false (``exists`` tests for it), and so does comparing values of
incomparable types, so a choice's ``default`` branch catches both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import GuardError

_MISSING = object()
_INDEX = re.compile(r"-?[0-9]+")


def _ordered(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(actual: Any, expected: Any) -> bool:
        if isinstance(actual, bool) or isinstance(expected, bool):
            return False
        numbers = (int, float)
        if isinstance(actual, numbers) and isinstance(expected, numbers):
            return fn(actual, expected)
        if isinstance(actual, str) and isinstance(expected, str):
            return fn(actual, expected)
        return False

    return compare


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return _member(expected, actual)
    if isinstance(actual, dict):
        return isinstance(expected, str) and expected in actual
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(actual: Any, expected: Any) -> bool:
    """Equality that keeps JSON's types apart: 1 == 1.0, but true != 1 and "1" != 1."""
    if _is_number(actual) and _is_number(expected):
        return actual == expected
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, list):
        return len(actual) == len(expected) and all(_equal(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(_equal(actual[k], expected[k]) for k in actual)
    return actual == expected


def _member(item: Any, items: list[Any]) -> bool:
    return any(_equal(item, candidate) for candidate in items)


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: _equal(a, b),
    "ne": lambda a, b: not _equal(a, b),
    "gt": _ordered(lambda a, b: a > b),
    "gte": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "lte": _ordered(lambda a, b: a <= b),
    "in": lambda a, b: isinstance(b, list) and _member(a, b),
    "not_in": lambda a, b: isinstance(b, list) and not _member(a, b),
    "contains": _contains,
    "starts_with": lambda a, b: isinstance(a, str) and isinstance(b, str) and a.startswith(b),
    "ends_with": lambda a, b: isinstance(a, str) and isinstance(b, str) and a.endswith(b),
    "exists": lambda a, b: (a is not _MISSING) == bool(b),
    "is_null": lambda a, b: (a is None) == bool(b),
}
VALUE_MUST_BE_LIST = {"in", "not_in"}
VALUE_MUST_BE_BOOL = {"exists", "is_null"}


def resolve_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or the module's ``_MISSING`` sentinel."""
    current = data
    for segment in path.split("."):
        if isinstance(current, dict):
            if segment not in current:
                return _MISSING
            current = current[segment]
        elif isinstance(current, list) and _INDEX.fullmatch(segment):
            index = int(segment)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def path_exists(data: Any, path: str) -> bool:
    """Does the dotted path lead somewhere in ``data`` (a null value counts)?"""
    return resolve_path(data, path) is not _MISSING


def get_path(data: Any, path: str | None, default: Any = None) -> Any:
    """Public form of :func:`resolve_path`: ``default`` where the path is missing."""
    if not path:
        return data
    value = resolve_path(data, path)
    return default if value is _MISSING else value


def check(condition: Any, where: str = "condition") -> list[str]:
    """Every reason ``condition`` is malformed, each naming where it is; empty when valid."""
    problems: list[str] = []
    if not isinstance(condition, dict):
        return [f"{where}: a condition must be an object, got {type(condition).__name__}"]
    combinators = [k for k in ("all", "any", "not") if k in condition]
    if combinators:
        if len(condition) != 1:
            return [f"{where}: '{combinators[0]}' must be the only key of its object"]
        key = combinators[0]
        inner = condition[key]
        if key == "not":
            return check(inner, f"{where}.not")
        if not isinstance(inner, list) or not inner:
            return [f"{where}.{key}: must be a non-empty list of conditions"]
        for i, item in enumerate(inner):
            problems += check(item, f"{where}.{key}[{i}]")
        return problems
    unknown = set(condition) - {"path", "op", "value"}
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; use path/op/value or all/any/not")
    path = condition.get("path")
    if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
        problems.append(f"{where}: 'path' must be a dotted path such as 'input.amount', got {path!r}")
    op = condition.get("op")
    if not isinstance(op, str) or op not in OPERATORS:
        problems.append(f"{where}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    elif "value" not in condition and op not in VALUE_MUST_BE_BOOL:
        problems.append(f"{where}: operator '{op}' needs a 'value'")
    elif op in VALUE_MUST_BE_LIST and not isinstance(condition.get("value"), list):
        problems.append(f"{where}: operator '{op}' needs a list as 'value'")
    elif op in VALUE_MUST_BE_BOOL and not isinstance(condition.get("value", True), bool):
        problems.append(f"{where}: operator '{op}' takes true or false as 'value'")
    return problems


def evaluate(condition: dict[str, Any], context: Any) -> bool:
    """Evaluate a condition that :func:`check` accepted. Raises GuardError on a malformed one."""
    if "all" in condition:
        return all(evaluate(c, context) for c in condition["all"])
    if "any" in condition:
        return any(evaluate(c, context) for c in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], context)
    op = condition.get("op")
    if not isinstance(op, str) or op not in OPERATORS:
        raise GuardError(f"unknown operator {op!r}")
    actual = resolve_path(context, condition["path"])
    expected = condition.get("value", True)
    if actual is _MISSING and op not in ("exists",):
        return False
    return OPERATORS[op](actual, expected)
