"""Reducers: how the outputs of a parallel state's branches become one output.

Built-in strategies: ``collect`` (each branch's output under its name), ``merge`` (objects
merged key by key), ``highest_score`` (the output whose ``path``, default ``score``, is
highest) and ``majority_vote`` (the most common output, or value at ``path``); ``custom``
calls a function registered with ``@reducer``. Where branches disagree, the conflict policy
decides: ``error`` (the join fails as conflicting aggregation), ``prefer_first`` or
``prefer_last`` (by branch order: the branch names' alphabetical order, the same on every
database) or ``vote`` (the most common value).
Every disagreement is returned as a Conflict, with the values that disagreed, to be recorded.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import guards
from .definition import Reducer
from .errors import RatchetError
from .registry import get_reducer


class AggregationConflict(RatchetError):
    """Branches disagreed and the conflict policy is ``error``."""

    code = "R610"

    def __init__(self, conflicts: list[Conflict]):
        self.conflicts = conflicts
        shown = "; ".join(f"{c.key}: {c.values}" for c in conflicts[:3])
        super().__init__(f"the branches disagree ({shown}); choose a conflict policy or fix the branches")


@dataclass
class Conflict:
    key: str  # what disagreed: an object key, "score" or "vote"
    values: dict[str, Any]  # branch -> its value
    chosen: Any = None
    policy: str = ""

    def as_data(self) -> dict[str, Any]:
        return {"key": self.key, "values": self.values, "chosen": self.chosen, "policy": self.policy}


@dataclass
class Reduced:
    value: Any
    conflicts: list[Conflict] = field(default_factory=list)


def _same(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _settle(conflict: Conflict, policy: str, vote_ok: bool = True) -> Any:
    """Pick a value for a disagreement by the policy (values are in branch order)."""
    conflict.policy = policy
    values = list(conflict.values.values())
    if policy == "prefer_first":
        conflict.chosen = values[0]
    elif policy == "prefer_last":
        conflict.chosen = values[-1]
    elif policy == "vote" and vote_ok:
        counts = Counter(_same(v) for v in values)
        (top, top_count), *rest = counts.most_common()
        if rest and rest[0][1] == top_count:
            raise AggregationConflict([conflict])  # a tied vote settles nothing
        conflict.chosen = next(v for v in values if _same(v) == top)
    else:
        raise AggregationConflict([conflict])
    return conflict.chosen


def reduce_outputs(spec: Reducer, outputs: dict[str, Any]) -> Reduced:
    """Merge the joined branches' outputs (branch -> output, in definition order)."""
    if spec.strategy == "collect":
        return Reduced(dict(outputs))
    if spec.strategy == "custom":
        return Reduced(get_reducer(spec.handler or "")(dict(outputs)))
    if spec.strategy == "merge":
        return _merge(outputs, spec.on_conflict)
    if spec.strategy == "highest_score":
        return _highest(outputs, spec.path or "score", spec.on_conflict)
    if spec.strategy == "majority_vote":
        return _vote(outputs, spec.path, spec.on_conflict)
    raise ValueError(f"unknown reducer strategy {spec.strategy!r}")


def _merge(outputs: dict[str, Any], policy: str) -> Reduced:
    not_objects = [b for b, out in outputs.items() if not isinstance(out, dict)]
    if not_objects:
        raise AggregationConflict([Conflict("type", {b: type(outputs[b]).__name__ for b in not_objects})])
    merged: dict[str, Any] = {}
    conflicts = []
    keys = list(dict.fromkeys(k for out in outputs.values() for k in out))
    for key in keys:
        values = {b: out[key] for b, out in outputs.items() if key in out}
        if len({_same(v) for v in values.values()}) > 1:
            conflict = Conflict(key, values)
            merged[key] = _settle(conflict, policy)
            conflicts.append(conflict)
        else:
            merged[key] = next(iter(values.values()))
    return Reduced(merged, conflicts)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _highest(outputs: dict[str, Any], path: str, policy: str) -> Reduced:
    scores = {b: _number(guards.get_path(out, path)) if isinstance(out, dict) else None for b, out in outputs.items()}
    scored = {b: s for b, s in scores.items() if s is not None}
    if not scored:
        raise AggregationConflict([Conflict(path, scores)])
    best = max(scored.values())
    leaders = {b: outputs[b] for b, s in scored.items() if s == best}
    if len({_same(v) for v in leaders.values()}) == 1:
        return Reduced(next(iter(leaders.values())))
    conflict = Conflict(path, leaders)
    return Reduced(_settle(conflict, policy), [conflict])


def _vote(outputs: dict[str, Any], path: str | None, policy: str) -> Reduced:
    ballots = {b: guards.get_path(out, path) if path else out for b, out in outputs.items()}
    counts = Counter(_same(v) for v in ballots.values())
    top, top_count = counts.most_common(1)[0]
    winners = [v for v, n in counts.items() if n == top_count]
    if len(winners) == 1:
        return Reduced(next(v for v in ballots.values() if _same(v) == top))
    tied = {b: v for b, v in ballots.items() if _same(v) in winners}
    conflict = Conflict("vote", tied)
    return Reduced(_settle(conflict, policy, vote_ok=False), [conflict])
