"""Typed definition objects: the engine reads these, never the raw JSON document.

Definition (JSON/YAML) -> ``validator.parse_definition`` (schema + semantic checks) -> Definition.
This module imports nothing of the validator: the validator builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .approval_spec import ApprovalSpec
from .retry import RetryRule

TERMINAL_TYPES = frozenset({"succeed", "fail"})


@dataclass(frozen=True)
class CatchRule:
    errors: tuple[str, ...]
    next: str
    gate: ApprovalSpec | None = None  # a person approves this transition first


@dataclass(frozen=True)
class ChoiceRule:
    condition: dict[str, Any]
    next: str
    gate: ApprovalSpec | None = None


@dataclass(frozen=True)
class Branch:
    """One branch of a parallel state: its own start and states (names unique in the definition)."""

    name: str
    start_at: str
    states: tuple[str, ...]


@dataclass(frozen=True)
class Join:
    """When a parallel state's branches are joined: ``all`` of them, a ``quorum`` of ``count``
    (the rest are cancelled), or the ``first`` ``count`` to finish."""

    mode: str = "all"
    count: int | None = None
    timeout_seconds: float | None = None

    def needed(self, total: int) -> int:
        return total if self.mode == "all" else min(self.count or 1, total)


@dataclass(frozen=True)
class Reducer:
    """How branch outputs become the parallel state's output, and what to do when they disagree."""

    strategy: str = "collect"
    handler: str | None = None
    path: str | None = None
    on_conflict: str = "error"


@dataclass(frozen=True)
class State:
    name: str
    type: str
    raw: dict[str, Any] = field(repr=False, compare=False)
    next: str | None = None
    end: bool = False
    handler: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    input_path: str | None = None
    result_path: str | None = None
    queue: str = "default"
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    retry: tuple[RetryRule, ...] = ()
    catch: tuple[CatchRule, ...] = ()
    choices: tuple[ChoiceRule, ...] = ()
    default: str | None = None
    seconds: float | None = None
    seconds_path: str | None = None
    output_path: str | None = None
    error: str | None = None
    cause: str | None = None
    branches: tuple[Branch, ...] = ()
    join: Join = Join()
    reducer: Reducer = Reducer()
    scope: str = ""  # "" at the top level; "<parallel state>/<branch>" inside a branch ("<map>/item" in a map)
    items_path: str | None = None
    max_concurrency: int | None = None
    tolerated_failure_percentage: float = 0.0
    # Contracts (every state that receives input): see contracts.py.
    input_map: dict[str, str] | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    # Agents: which provider and model, what they are told, the tools they may call, the states
    # they may route to. A handoff names the agent it passes control to (``to``).
    provider: str | None = None
    model: str | None = None
    instructions: str = ""
    tools: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    to: str | None = None
    # A sub-workflow state starts a child run of this published workflow (its latest version,
    # or the one pinned) and waits for it.
    workflow: str | None = None
    version: int | None = None
    # An approval state's settings, or the gate a person must pass to leave this state.
    approval: ApprovalSpec | None = None
    gate: ApprovalSpec | None = None

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    @property
    def context_key(self) -> str:
        """Where this state's output lands in the run context."""
        return self.result_path or self.name

    def successors(self) -> list[str]:
        """Every state this one may transition to, error paths included."""
        targets = [self.next] if self.next else []
        targets += list(self.routes)
        targets += [self.to] if self.to else []
        targets += [self.name] if self.type == "agent" and self.tools else []  # the tool loop
        targets += [c.next for c in self.choices]
        targets += [self.default] if self.default else []
        targets += [c.next for c in self.catch]
        for spec in (self.approval, self.gate, *(rule.gate for rule in (*self.choices, *self.catch))):
            targets += spec.targets() if spec is not None else []
        return targets

    def edge_gate(self, edge: str) -> ApprovalSpec | None:
        """The gate of one of this state's transitions: "" (its own), "choice:<i>" or "catch:<i>"."""
        kind, _, index = edge.partition(":")
        if kind == "choice":
            return self.choices[int(index)].gate
        if kind == "catch":
            return self.catch[int(index)].gate
        return self.gate


@dataclass(frozen=True)
class Budgets:
    max_steps: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    max_depth: int | None = None
    max_parallel_agents: int | None = None


@dataclass(frozen=True)
class Definition:
    start_at: str
    states: dict[str, State]
    budgets: Budgets = Budgets()
    timeout_seconds: float | None = None
    topology: str = ""  # as declared; "" when the document declares none (nothing is checked then)
    title: str = ""
    input_schema: dict[str, Any] | None = None  # what a run's input must be (checked at start)
    sample_input: Any = None  # what the start form is prefilled with

    def state(self, name: str) -> State:
        return self.states[name]

    @cached_property
    def output_keys(self) -> frozenset[str]:
        """Every context key a state may write (outputs, caught errors, joins, handoffs)."""
        return frozenset(state.context_key for state in self.states.values())

    def reads_outputs(self, state: State) -> bool:
        """Does ``state``'s input come from any output (else only from the run's input)?"""
        paths = list(state.input_map.values()) if state.input_map is not None else [state.input_path or "input"]
        return any(not path or path.split(".", 1)[0] in self.output_keys for path in paths)


def build_state(name: str, raw: dict[str, Any], scope: str = "", queue: str = "default") -> State:
    join, reducer = raw.get("join") or {}, raw.get("reducer") or {}
    return State(
        name=name,
        type=raw["type"],
        raw=raw,
        next=raw.get("next"),
        end=bool(raw.get("end", False)),
        handler=raw.get("handler"),
        args=dict(raw.get("args") or {}),
        input_path=raw.get("input_path"),
        result_path=raw.get("result_path"),
        queue=raw.get("queue", queue),
        timeout_seconds=raw.get("timeout_seconds"),
        heartbeat_seconds=raw.get("heartbeat_seconds"),
        retry=tuple(RetryRule.from_dict(r) for r in raw.get("retry", [])),
        catch=tuple(CatchRule(tuple(c.get("errors", ["*"])), c["next"], _gate(c)) for c in raw.get("catch", [])),
        choices=tuple(ChoiceRule(c["condition"], c["next"], _gate(c)) for c in raw.get("choices", [])),
        default=raw.get("default"),
        seconds=raw.get("seconds"),
        seconds_path=raw.get("seconds_path"),
        output_path=raw.get("output_path"),
        error=raw.get("error"),
        cause=raw.get("cause"),
        # Branches in the order of their names: PostgreSQL's jsonb does not keep a document's
        # key order, and "prefer_first" must mean the same on every database.
        branches=tuple(Branch(branch, spec["start_at"], tuple(spec["states"]))
                       for branch, spec in sorted(_branches(raw).items())),
        items_path=raw.get("items_path"),
        max_concurrency=raw.get("max_concurrency"),
        tolerated_failure_percentage=float(raw.get("tolerated_failure_percentage", 0)),
        join=Join(join.get("mode", "all"), join.get("count"), join.get("timeout_seconds")),
        reducer=Reducer(reducer.get("strategy", "collect"), reducer.get("handler"), reducer.get("path"),
                        reducer.get("on_conflict", "error")),
        scope=scope,
        input_map=dict(raw["input"]) if isinstance(raw.get("input"), dict) else None,
        input_schema=raw.get("input_schema"),
        output_schema=raw.get("output_schema"),
        provider=raw.get("provider"),
        model=raw.get("model"),
        instructions=raw.get("instructions", ""),
        tools=tuple(raw.get("tools") or ()),
        routes=tuple(raw.get("routes") or ()),
        to=raw.get("to"),
        workflow=raw.get("workflow"),
        version=raw.get("version"),
        approval=ApprovalSpec.from_raw(raw) if raw["type"] == "approval" else None,
        gate=_gate(raw),
    )


def _gate(raw: dict[str, Any]) -> ApprovalSpec | None:
    """The approval a transition (a state's own, a choice rule's, a catch rule's) waits for."""
    spec = raw.get("requires_approval")
    return ApprovalSpec.from_raw(spec) if isinstance(spec, dict) else None


MAP_BRANCH = "item"


def _branches(raw: dict[str, Any]) -> dict[str, Any]:
    """A parallel state's branches; a map's iterator, as its one branch named "item"."""
    if raw.get("type") == "map" and isinstance(raw.get("iterator"), dict):
        return {MAP_BRANCH: raw["iterator"]}
    return raw.get("branches") or {}


def collect_states(states: dict[str, Any], scope: str = "", queue: str = "default") -> list[State]:
    """Every state of a definition, branches included, in document order (names may repeat
    here: the validator reports duplicates; the engine needs them unique)."""
    found = []
    for name, raw in states.items():
        state = build_state(name, raw, scope, queue)
        found.append(state)
        for branch_name, spec in _branches(raw).items():
            found += collect_states(spec["states"], f"{name}/{branch_name}", spec.get("queue", queue))
    return found


def build_definition(doc: dict[str, Any]) -> Definition:
    """Typed objects from a document the schema accepted (no semantic checks here)."""
    budgets = doc.get("budgets") or {}
    return Definition(
        start_at=doc["start_at"],
        states={state.name: state for state in collect_states(doc["states"])},
        budgets=Budgets(**budgets),
        timeout_seconds=doc.get("timeout_seconds"),
        topology=doc.get("topology", ""),
        title=doc.get("title", ""),
        input_schema=doc.get("input_schema"),
        sample_input=doc.get("sample_input", {}),
    )


_CACHE: dict[str, Definition] = {}


def definition_for_version(version: Any) -> Definition:
    """The typed definition of a published version, cached by content hash (it never changes)."""
    cached = _CACHE.get(version.content_hash)
    if cached is None:
        cached = _CACHE[version.content_hash] = build_definition(version.definition)
    return cached
