"""What changed between two definitions: states added, removed and changed (field by field),
transitions added and removed, and the workflow's own fields (budgets, schemas, ...). The
designer draws the newer graph with the added and changed states coloured and lists the rest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .edits import pointers, scopes


@dataclass(frozen=True)
class FieldChange:
    key: str
    old: Any  # MISSING when the field was added
    new: Any  # MISSING when the field was removed

    @property
    def old_text(self) -> str:
        return _text(self.old)

    @property
    def new_text(self) -> str:
        return _text(self.new)


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    where: str  # "next", "choice 1", "catch 2", "default", ...

    def __str__(self) -> str:
        return f"{self.source} → {self.target} ({self.where})"


@dataclass
class DefinitionDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[FieldChange]] = field(default_factory=dict)
    transitions_added: list[Transition] = field(default_factory=list)
    transitions_removed: list[Transition] = field(default_factory=list)
    workflow: list[FieldChange] = field(default_factory=list)  # top-level fields other than states

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.transitions_added
                    or self.transitions_removed or self.workflow)

    def highlights(self) -> dict[str, str]:
        """State name -> "added", "changed" or "removed", for the graph of the comparison."""
        return {**{name: "changed" for name in self.changed}, **{name: "added" for name in self.added},
                **{name: "removed" for name in self.removed}}


MISSING = object()


def _text(value: Any) -> str:
    if value is MISSING:
        return "(none)"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _states(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: raw for scope, _ in scopes(doc) for name, raw in (scope.get("states") or {}).items()
            if isinstance(raw, Mapping)}


def _transitions(doc: Mapping[str, Any]) -> set[Transition]:
    found = set()
    for scope, owner in scopes(doc):
        if isinstance(scope.get("start_at"), str):
            found.add(Transition(owner or "start", scope["start_at"], "start"))
        for name, raw in (scope.get("states") or {}).items():
            if isinstance(raw, Mapping):
                found |= {Transition(name, container[key], where) for where, (container, key) in pointers(raw)}
    return found


def _fields(old: Mapping[str, Any], new: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[FieldChange]:
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key in skip:
            continue
        before, after = old.get(key, MISSING), new.get(key, MISSING)
        if before is MISSING or after is MISSING or before != after:
            changes.append(FieldChange(key, before, after))
    return changes


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> DefinitionDiff:
    """What changed from ``old`` to ``new`` (definition documents). A state's branches are
    compared as states of their own, not as one changed field of the parallel or map."""
    before, after = _states(old), _states(new)
    result = DefinitionDiff(
        added=[name for name in after if name not in before],
        removed=[name for name in before if name not in after],
        workflow=_fields(old, new, skip=("states",)),
    )
    for name in after:
        if name in before:
            changes = _fields(before[name], after[name], skip=("branches", "iterator"))
            if changes:
                result.changed[name] = changes
    old_edges, new_edges = _transitions(old), _transitions(new)
    result.transitions_added = sorted(new_edges - old_edges, key=str)
    result.transitions_removed = sorted(old_edges - new_edges, key=str)
    return result
