"""The condition builder: a choice rule's guard as rows (path, operator, value, "not") joined
by all or any, instead of typed as code, and the context paths a guard can read at a state.

A guard the builder cannot show as one group of rows (groups inside groups) is edited as JSON in
the panel; ``to_rows`` says so by returning None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.guards import OPERATORS, VALUE_MUST_BE_BOOL, check

from .edits import pointers, scopes

OPERATOR_WORDS = {
    "eq": "equals", "ne": "does not equal", "gt": "is greater than", "gte": "is at least",
    "lt": "is less than", "lte": "is at most", "in": "is one of", "not_in": "is none of",
    "contains": "contains", "starts_with": "starts with", "ends_with": "ends with",
    "exists": "exists (true/false)", "is_null": "is null (true/false)",
}
assert set(OPERATOR_WORDS) == set(OPERATORS), "every guard operator has its words"
MODES = {"all": "all of these hold", "any": "any of these holds"}


@dataclass
class Row:
    path: str = ""
    op: str = "eq"
    value: str = ""  # as typed: JSON (42, "x", [1, 2], true) or plain text
    negate: bool = False


def _row(condition: Mapping[str, Any]) -> Row | None:
    negate = False
    if set(condition) == {"not"} and isinstance(condition["not"], Mapping):
        condition, negate = condition["not"], True
    if not {"path", "op"} <= set(condition) or set(condition) - {"path", "op", "value"}:
        return None
    value = condition.get("value", True if condition.get("op") in VALUE_MUST_BE_BOOL else "")
    shown = value if isinstance(value, str) and not _looks_like_json(value) else json.dumps(value)
    return Row(str(condition["path"]), str(condition["op"]), shown, negate)


def _looks_like_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def to_rows(condition: Any) -> tuple[str, list[Row]] | None:
    """(mode, rows) for a guard of one comparison or one all/any group of (negated) comparisons;
    None for anything deeper."""
    if not isinstance(condition, Mapping):
        return None
    for mode in MODES:
        if set(condition) == {mode} and isinstance(condition[mode], list):
            rows = [_row(part) if isinstance(part, Mapping) else None for part in condition[mode]]
            return (mode, rows) if rows and all(rows) else None  # type: ignore[return-value]
    row = _row(condition)
    return ("all", [row]) if row else None


def parse_value(text: str) -> Any:
    """A typed value: JSON when it parses as JSON (numbers, true, lists, quoted text), else the text."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def from_rows(mode: str, rows: list[Row]) -> tuple[dict[str, Any] | None, list[str]]:
    """The guard the rows make, and every problem with it (guards.check's, one per row)."""
    if mode not in MODES:
        return None, [f"unknown mode {mode!r}; use all or any"]
    parts = []
    for row in rows:
        comparison: dict[str, Any] = {"path": row.path.strip(), "op": row.op}
        if row.value.strip() or row.op not in VALUE_MUST_BE_BOOL:
            comparison["value"] = parse_value(row.value)
        parts.append({"not": comparison} if row.negate else comparison)
    if not parts:
        return None, ["a rule needs at least one condition"]
    condition = parts[0] if len(parts) == 1 else {mode: parts}
    problems = check(condition, "condition")
    return (None if problems else condition), problems


def context_paths(doc: MutableMapping[str, Any], state: str) -> list[str]:
    """Paths a guard at ``state`` can read: the run's input (by its input schema's properties)
    and the output of each state that can run before it (by its output schema, else whole)."""
    paths = ["input"]
    paths += [f"input.{name}" for name in _properties(doc.get("input_schema"))]
    before: dict[str, set[str]] = {}
    raws: dict[str, Mapping[str, Any]] = {}
    for scope, _ in scopes(doc):
        for name, raw in (scope.get("states") or {}).items():
            if isinstance(raw, Mapping):
                raws[name] = raw
                for _, (container, key) in pointers(raw):
                    before.setdefault(container[key], set()).add(name)
    seen: list[str] = []
    stack = [state]
    while stack:
        for previous in sorted(before.get(stack.pop(), ())):
            if previous not in seen and previous != state:
                seen.append(previous)
                stack.append(previous)
    for name in sorted(seen):
        paths.append(name)
        paths += [f"{name}.{prop}" for prop in _properties(raws[name].get("output_schema"))]
    return paths


def _properties(schema: Any) -> list[str]:
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        return sorted(str(name) for name in schema["properties"])
    return []
