"""Edits of a definition document made from the designer's graph and panel: add, connect,
rename, delete and change states. Each works on the round-trip tree of source.py, so comments
and key order outside what changed survive; each raises EditError with a message that says
what to do instead.

Where a state names another (the places rename follows and delete reports): ``next``,
``default``, ``to`` (handoff), ``reject`` (approval), ``routes`` (agent), the ``next`` of each
choice and catch rule, the targets of an approval's labelled ``outcomes``, and the ``start_at``
of the workflow and of each branch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.definition import MAP_BRANCH

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$")
# What a new state of each type starts with (the panel then fills it in); nested state names
# derive from the new state's name, as names are unique across branches.
STARTERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "task": lambda name: {"type": "task", "handler": "demo.noop"},
    "agent": lambda name: {"type": "agent", "provider": "offline", "instructions": "Describe what the agent does."},
    "choice": lambda name: {"type": "choice", "choices": []},
    "wait": lambda name: {"type": "wait", "seconds": 1},
    "approval": lambda name: {"type": "approval", "title": "Approve?"},
    "parallel": lambda name: {"type": "parallel", "branches": {"first": {"start_at": f"{name}_first", "states": {
        f"{name}_first": {"type": "task", "handler": "demo.noop", "end": True}}}}},
    "map": lambda name: {"type": "map", "items_path": "items", "iterator": {"start_at": f"{name}_item", "states": {
        f"{name}_item": {"type": "task", "handler": "demo.noop", "end": True}}}},
    "handoff": lambda name: {"type": "handoff"},
    "subworkflow": lambda name: {"type": "subworkflow"},
    "succeed": lambda name: {"type": "succeed"},
    "fail": lambda name: {"type": "fail", "error": "Failed"},
}
# Types whose new state still needs a target the designer cannot guess (a finding says which).
NEEDS_TARGET = ("choice", "handoff", "subworkflow")
TERMINAL_TYPES = ("succeed", "fail")
SINGLE_REFERENCES = ("next", "default", "to", "reject")


class EditError(ValueError):
    """An edit that cannot be made, and why."""


@dataclass(frozen=True)
class Reference:
    """A place that names a state: which state (or the workflow) and where."""

    holder: str  # a state's name, or "" for the workflow (its start_at)
    where: str  # "next", "choice 2", "catch 1", "outcome refund", "route 1", "start_at of branch b"

    def __str__(self) -> str:
        return f"{self.holder}: {self.where}" if self.holder else f"the workflow: {self.where}"


def scopes(doc: MutableMapping[str, Any]) -> Iterator[tuple[MutableMapping[str, Any], str]]:
    """Every mapping holding ``start_at`` and ``states`` (the workflow, then each branch), with
    the name of the state that owns it (the parallel or map) and the branch, or ""."""
    stack: list[tuple[MutableMapping[str, Any], str]] = [(doc, "")]
    while stack:
        scope, owner = stack.pop(0)
        yield scope, owner
        for name, raw in (scope.get("states") or {}).items():
            if not isinstance(raw, MutableMapping):
                continue
            branches = raw.get("branches") if raw.get("type") != "map" else {MAP_BRANCH: raw.get("iterator")}
            for branch, spec in (branches or {}).items():
                if isinstance(spec, MutableMapping):
                    stack.append((spec, f"{name}/{branch}"))


def find(doc: MutableMapping[str, Any], name: str) -> tuple[MutableMapping[str, Any], MutableMapping[str, Any]]:
    """(the ``states`` mapping that holds the state, its raw mapping); EditError if none does."""
    for scope, _ in scopes(doc):
        states = scope.get("states") or {}
        if name in states and isinstance(states[name], MutableMapping):
            return states, states[name]
    raise EditError(f"there is no state named {name!r}")


def state_names(doc: MutableMapping[str, Any]) -> list[str]:
    return [name for scope, _ in scopes(doc) for name in (scope.get("states") or {})]


def references(doc: MutableMapping[str, Any], target: str) -> list[Reference]:
    """Every place that names ``target``."""
    found = []
    for scope, owner in scopes(doc):
        if scope.get("start_at") == target:
            found.append(Reference("", f"start_at of branch {owner}" if owner else "start_at"))
        for name, raw in (scope.get("states") or {}).items():
            if isinstance(raw, MutableMapping):
                found += [Reference(name, where) for where, _ in pointers(raw) if pointer_value(raw, where) == target]
    return found


def pointers(raw: MutableMapping[str, Any]) -> Iterator[tuple[str, tuple[Any, Any]]]:
    """(description, (container, key)) of each place in a state that names a state."""
    for key in SINGLE_REFERENCES:
        if isinstance(raw.get(key), str):
            yield key, (raw, key)
    for label, rules in (("choice", raw.get("choices")), ("catch", raw.get("catch"))):
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, MutableMapping) and isinstance(rule.get("next"), str):
                yield f"{label} {i + 1}", (rule, "next")
    for i, route in enumerate(raw.get("routes") if isinstance(raw.get("routes"), list) else []):
        if isinstance(route, str):
            yield f"route {i + 1}", (raw["routes"], i)
    outcomes = raw.get("outcomes")
    for label, target in (outcomes.items() if isinstance(outcomes, MutableMapping) else []):
        if isinstance(target, str):
            yield f"outcome {label}", (outcomes, label)


def pointer_value(raw: MutableMapping[str, Any], where: str) -> Any:
    for description, (container, key) in pointers(raw):
        if description == where:
            return container[key]
    return None


def nested_names(raw: MutableMapping[str, Any]) -> list[str]:
    """The names of the states nested in a state (its branches')."""
    return state_names({"states": {"_": raw}})[1:]


def _check_new_name(doc: MutableMapping[str, Any], name: str) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise EditError(f"{name!r} is not a state name: use letters, digits, _ and - (a letter or _ first), "
                        "at most 100 characters")
    if name in state_names(doc):
        raise EditError(f"a state named {name!r} exists already (names are unique across branches too)")


def add_state(doc: MutableMapping[str, Any], name: str, state_type: str, *, after: str | None = None) -> None:
    """Add a state of ``state_type`` with its starter fields. With ``after``, it goes in that
    state's scope, between ``after`` and what ``after`` led to; the first state of an empty
    workflow becomes its start. A new state leads nowhere else: it ends, until connected."""
    if state_type not in STARTERS:
        raise EditError(f"unknown state type {state_type!r}; use one of {', '.join(STARTERS)}")
    _check_new_name(doc, name)
    states = doc.setdefault("states", {})
    if after:
        states, previous = find(doc, after)
    raw = STARTERS[state_type](name)
    for nested in nested_names(raw):
        _check_new_name(doc, nested)
    successor = previous.get("next") if after else None
    if state_type not in (*TERMINAL_TYPES, *NEEDS_TARGET):
        if successor:
            raw["next"] = successor  # inserted between ``after`` and what followed it
        else:
            raw["end"] = True
    states[name] = raw
    if not doc.get("start_at"):
        doc["start_at"] = name
    if after and previous.get("type") not in ("choice", *TERMINAL_TYPES):
        connect(doc, after, name)


def connect(doc: MutableMapping[str, Any], source: str, target: str) -> str:
    """Make ``source`` lead to ``target``; returns how, in words. A choice gets ``target`` as its
    default (conditions are added in its panel); a terminal state leads nowhere."""
    _, raw = find(doc, source)
    find(doc, target)
    kind = raw.get("type")
    if kind in TERMINAL_TYPES:
        raise EditError(f"{source} is a {kind} state: a run ends there, so it cannot lead anywhere")
    if source == target and kind != "choice":
        raise EditError(f"{source} cannot lead to itself; a loop goes through a choice with a budget")
    if kind == "choice":
        raw["default"] = target
        return f"{target} is now the default of {source}"
    if kind == "agent" and isinstance(raw.get("routes"), list) and raw["routes"]:
        if target not in raw["routes"]:
            raw["routes"].append(target)
        return f"{target} is now a route {source} may pick"
    raw.pop("end", None)
    raw["next"] = target
    return f"{source} now leads to {target}"


def rename(doc: MutableMapping[str, Any], old: str, new: str) -> int:
    """Rename a state where it is defined and everywhere it is named; returns the references
    that followed."""
    states, _ = find(doc, old)
    _check_new_name(doc, new)
    changed = 0
    for scope, _ in scopes(doc):
        if scope.get("start_at") == old:
            scope["start_at"] = new
            changed += 1
        for raw in (scope.get("states") or {}).values():
            if isinstance(raw, MutableMapping):
                for _, (container, key) in list(pointers(raw)):
                    if container[key] == old:
                        container[key] = new
                        changed += 1
    position = list(states).index(old)
    value = states.pop(old)
    if hasattr(states, "insert"):  # a round-trip mapping keeps the state where it was
        states.insert(position, new, value)
    else:
        items = list(states.items())
        states.clear()
        states.update(items[:position] + [(new, value)] + items[position:])
    return changed


def delete_state(doc: MutableMapping[str, Any], name: str) -> list[Reference]:
    """Delete a state; the references to it are left for the validator to report (the panel lists
    them first, from ``references``). Returns them."""
    states, _ = find(doc, name)
    broken = [ref for ref in references(doc, name) if ref.holder != name]
    del states[name]
    return broken


def set_fields(doc: MutableMapping[str, Any], name: str, values: dict[str, Any]) -> None:
    """Set a state's fields (None removes one); ``type`` changes are refused (add a new state)."""
    _, raw = find(doc, name)
    if "type" in values and values["type"] != raw.get("type"):
        raise EditError("a state's type does not change: add a state of the new type and connect it instead")
    for key, value in values.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value


def set_rule(doc: MutableMapping[str, Any], name: str, index: int, condition: dict[str, Any], target: str) -> str:
    """Set a choice's rule ``index`` (one past the last adds a rule); its other keys (a gate)
    are kept. Returns what changed, in words."""
    _, raw = find(doc, name)
    if raw.get("type") != "choice":
        raise EditError(f"{name} is a {raw.get('type')} state: only a choice has rules")
    find(doc, target)
    rules = raw.setdefault("choices", [])
    if not 0 <= index <= len(rules):
        raise EditError(f"{name} has {len(rules)} rule(s); there is no rule {index + 1}")
    if index == len(rules):
        rules.append({"condition": condition, "next": target})
        return f"added rule {index + 1} to {name}"
    rules[index]["condition"] = condition
    rules[index]["next"] = target
    return f"changed rule {index + 1} of {name}"


def delete_rule(doc: MutableMapping[str, Any], name: str, index: int) -> str:
    _, raw = find(doc, name)
    rules = raw.get("choices") if raw.get("type") == "choice" else None
    if not isinstance(rules, list) or not 0 <= index < len(rules):
        raise EditError(f"{name} has no rule {index + 1}")
    del rules[index]
    return f"deleted rule {index + 1} of {name}"


def paste_state(doc: MutableMapping[str, Any], name: str, raw: MutableMapping[str, Any]) -> str:
    """Add a copied state (from this draft or another) under ``name``, or under ``name_2``,
    ``name_3``... when taken; it keeps its fields but leads nowhere until connected. Returns the
    name it got."""
    taken = set(state_names(doc))
    new, n = name, 1
    while new in taken:
        n += 1
        new = f"{name}_{n}"
    _check_new_name(doc, new)
    copy = {key: value for key, value in raw.items() if key not in ("next", "default", "to", "reject")}
    for nested in nested_names(copy):
        _check_new_name(doc, nested)
    if copy.get("type") not in (*TERMINAL_TYPES, *NEEDS_TARGET, "choice"):
        copy["end"] = True
    doc.setdefault("states", {})[new] = copy
    if not doc.get("start_at"):
        doc["start_at"] = new
    return new


def make_start(doc: MutableMapping[str, Any], name: str) -> str:
    """Make ``name`` the first state of its scope: the workflow's, or its branch's."""
    for scope, owner in scopes(doc):
        if name in (scope.get("states") or {}):
            scope["start_at"] = name
            return f"{name} is now the start" + (f" of branch {owner}" if owner else "")
    raise EditError(f"there is no state named {name!r}")
