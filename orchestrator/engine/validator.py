"""Semantic validation of a definition: each finding names its state and says how to fix it.

JSON Schema first (structure), then graph checks: unknown targets, unreachable states,
dead ends, unknown handlers, choices without a default, guards that do not parse, and
cycles with no step budget.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from . import guards
from .approval_checks import approval_findings
from .definition import MAP_BRANCH, Definition, build_definition, collect_states
from .errors import DefinitionError
from .schema import BUILT_STATE_TYPES, DEFINITION_SCHEMA


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    state: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = f"state '{self.state}': " if self.state else ""
        return f"{where}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "state": self.state, "severity": self.severity, "message": self.message}


_schema_validator = Draft202012Validator(DEFINITION_SCHEMA)


def _schema_findings(doc: Any) -> list[Finding]:
    findings = []
    for error in sorted(_schema_validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = list(error.absolute_path)
        at = max((i for i, part in enumerate(path[:-1]) if part == "states"), default=None)
        state = str(path[at + 1]) if at is not None else None
        where = ".".join(str(p) for p in (path[at + 2:] if at is not None else path))
        if path and path[-1] == "states" and "propertyNames" in error.absolute_schema_path:
            state, where = str(error.instance), ""
            hint = "rename it: letters, digits and underscores, not starting with a digit, at most 100"
        elif error.validator == "additionalProperties":
            hint = "remove it, or check its spelling"
        elif error.validator == "required":
            hint = "add it"
        elif error.validator == "enum" and path[-1:] == ["type"]:
            hint = f"use one of {', '.join(BUILT_STATE_TYPES)}"
        else:
            hint = "fix the value"
        prefix = f"{where}: " if where else ""
        findings.append(Finding("schema", f"{prefix}{error.message} ({hint})", state))
    return findings


def _reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node in seen or node not in edges:
            continue
        seen.add(node)
        stack.extend(edges[node])
    return seen


def _cycle_entry(start: str, edges: dict[str, list[str]]) -> str | None:
    """A state where a cycle reachable from ``start`` closes, or None (iterative: no recursion limit)."""
    on_path, done = {start}, set()
    stack = [(start, iter(edges[start]))]
    while stack:
        node, successors = stack[-1]
        for nxt in successors:
            if nxt in on_path:
                return nxt
            if nxt not in done and nxt in edges:
                on_path.add(nxt)
                stack.append((nxt, iter(edges[nxt])))
                break
        else:
            stack.pop()
            on_path.discard(node)
            done.add(node)
    return None


def validate(doc: Any, known_handlers: set[str] | None = None) -> list[Finding]:
    """All findings for a definition document; an empty list means it can be published."""
    if not isinstance(doc, dict):
        return [Finding("schema", f"a definition must be an object, got {type(doc).__name__}")]
    findings = _schema_findings(doc)
    if findings:
        return findings
    if known_handlers is None:
        from .registry import handler_names

        known_handlers = handler_names()
    names = Counter(state.name for state in collect_states(doc["states"]))
    for name, count in names.items():
        if count > 1:
            findings.append(Finding(
                "duplicate_state", f"{count} states are named '{name}' (names are unique across branches "
                "too, so the history can name a step); rename all but one", name))
    if findings:
        return findings
    definition = build_definition(doc)
    states = definition.states
    findings += _input_findings(definition)
    if definition.start_at not in states:
        findings.append(Finding(
            "unknown_start", f"start_at names '{definition.start_at}', which is not a state; "
            f"set it to one of {', '.join(states)}"))
    for state in states.values():
        for target in state.successors():
            if target not in states:
                findings.append(Finding(
                    "unknown_target", f"transitions to '{target}', which is not a state; "
                    "add that state or point the transition at an existing one", state.name))
            elif states[target].scope != state.scope:
                findings.append(Finding(
                    "crosses_branch", f"transitions to '{target}', which belongs to "
                    f"{_where(states[target].scope)}; a state may only lead to states of its own "
                    f"{'branch' if state.scope else 'level'}", state.name))
        if state.type in ("parallel", "map"):
            findings += _fan_out_findings(state)
        findings += _contract_findings(state)
        if state.type in ("agent", "handoff"):
            findings += _agent_findings(state, states)
        if state.type == "agent" and state.routes:
            if state.next or state.end:
                findings.append(Finding(
                    "routes_and_next", "an agent that routes picks its next state among its routes; "
                    "remove 'next' / 'end', or remove 'routes'", state.name))
        elif state.type in ("task", "agent", "subworkflow", "wait", "parallel", "map", "approval"):
            if state.next and state.end:
                findings.append(Finding(
                    "next_and_end", "has both 'next' and 'end'; keep one", state.name))
            elif not state.next and not state.end:
                findings.append(Finding(
                    "dead_end", "has no 'next' and is not marked 'end': true; "
                    "add a transition or end the run here", state.name))
        if state.type == "task" and state.handler not in known_handlers:
            hint = ", ".join(sorted(known_handlers)[:8]) or "none registered"
            findings.append(Finding(
                "unknown_handler", f"handler '{state.handler}' is not registered; "
                f"register it with @handler('{state.handler}') or use a known one ({hint})", state.name))
        if state.type == "subworkflow":
            findings += _child_findings(state, doc.get("name"))
        findings += approval_findings(state)
        if state.type == "wait" and (state.seconds is None) == (state.seconds_path is None):
            findings.append(Finding(
                "wait_duration", "a wait needs exactly one of 'seconds' or 'seconds_path'", state.name))
        if state.type == "choice":
            if not state.default:
                findings.append(Finding(
                    "choice_without_default", "a choice needs a 'default' branch for when no condition "
                    "holds; add \"default\": \"<state>\"", state.name))
            for i, rule in enumerate(state.choices):
                for problem in guards.check(rule.condition, f"choices[{i}].condition"):
                    findings.append(Finding("bad_guard", problem, state.name))
    findings += _topology_findings(definition)
    if findings:
        return findings
    has_budget = definition.budgets.max_steps is not None
    # A cycle through a handoff is bounded by the depth cap, when the definition declares one.
    depth_bounded = definition.budgets.max_depth is not None
    for start, names in _scopes(definition):
        findings += _graph_findings(start, names, states, has_budget, depth_bounded)
    return findings


def _scopes(definition: Definition) -> list[tuple[str, list[str]]]:
    """The graphs to check apart: the top level, and each branch of each parallel state."""
    states = definition.states
    scopes = [(definition.start_at, [n for n, s in states.items() if not s.scope])]
    for state in states.values():
        for branch in state.branches:
            scope = f"{state.name}/{branch.name}"
            scopes.append((branch.start_at, [n for n, s in states.items() if s.scope == scope]))
    return scopes


def _graph_findings(start: str, names: list[str], states: dict[str, Any], has_budget: bool,
                    depth_bounded: bool = False) -> list[Finding]:
    findings = []
    edges = {name: states[name].successors() for name in names}
    reachable = _reachable(start, edges)
    for name in names:
        if name not in reachable:
            findings.append(Finding(
                "unreachable", f"no transition leads here from '{start}'; connect it or delete it", name))
    reverse: dict[str, list[str]] = {name: [] for name in names}
    for name, targets in edges.items():
        for target in targets:
            reverse[target].append(name)
    ends = [name for name in names if states[name].is_terminal or states[name].end]
    finishing = _reachable_many(ends, reverse)
    for name in names:
        if name in reachable and name not in finishing:
            findings.append(Finding(
                "no_way_out", "no path from here reaches a succeed, fail or end state, so a run "
                "would never finish; add a transition out of the loop", name))
    unbounded = {name: ([] if depth_bounded and states[name].type == "handoff" else targets)
                 for name, targets in edges.items()}
    loop = _cycle_entry(start, unbounded) if not has_budget else None
    if loop is not None:
        findings.append(Finding(
            "cycle_without_budget", "this state is on a cycle but the workflow has no step budget; "
            "set budgets.max_steps (or budgets.max_depth, for a cycle through a handoff) so a looping run "
            "stops", loop))
    return findings


def _input_findings(definition: Definition) -> list[Finding]:
    """The workflow's input schema must be a JSON Schema, and its sample input must pass it."""
    schema = definition.input_schema
    if schema is None:
        return []
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return [Finding("bad_schema", f"input_schema is not a valid JSON Schema: {error.message}; fix it "
                        "or remove it")]
    problem = best_match(Draft202012Validator(schema).iter_errors(definition.sample_input))
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(the whole input)"
        return [Finding("sample_input", f"sample_input breaks input_schema at {where}: {problem.message}; "
                        "fix the sample so the start form offers a valid input")]
    return []


def _contract_findings(state: Any) -> list[Finding]:
    findings = []
    for key in ("input_schema", "output_schema"):
        schema = getattr(state, key)
        if schema is None:
            continue
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            findings.append(Finding(
                "bad_schema", f"{key} is not a valid JSON Schema: {error.message}; fix it or remove it", state.name))
    return findings


def _child_findings(state: Any, own_name: str | None) -> list[Finding]:
    """The workflow a sub-workflow state starts must be published (itself is allowed: the depth
    cap bounds the recursion). Without a database (a definition checked offline) this is left
    to run time, where a missing workflow fails the step with the same message."""
    from django.db import DatabaseError

    from ..models import WorkflowVersion

    if state.workflow == own_name:
        return []
    try:
        versions = set(WorkflowVersion.objects.filter(workflow__name=state.workflow).values_list("number", flat=True))
    except DatabaseError:
        return []
    if not versions:
        return [Finding("unknown_workflow", f"starts workflow '{state.workflow}', which has no published "
                        "version; publish it first or name another workflow", state.name)]
    if state.version is not None and state.version not in versions:
        return [Finding("unknown_version", f"pins version {state.version} of '{state.workflow}', which does "
                        f"not exist (it has {', '.join(map(str, sorted(versions)))}); pin one of those or "
                        "remove 'version' to follow the latest", state.name)]
    return []


def _agent_findings(state: Any, states: dict[str, Any]) -> list[Finding]:
    from .providers.offline import offline_model_names
    from .registry import tool_names

    findings = []
    if state.type == "handoff":
        target = states.get(state.to)
        if target is not None and target.type != "agent":
            findings.append(Finding(
                "handoff_target", f"hands off to '{state.to}', a {target.type} state; a handoff passes "
                "control to an agent state", state.name))
        elif target is not None and target.input_map is not None:
            findings.append(Finding(
                "handoff_target_input", f"hands off to '{state.to}', which declares an input mapping of its own; "
                "an agent reached by a handoff receives what the handoff passes: remove its 'input' and "
                "check what it receives with input_schema", state.name))
        return findings
    for name in state.tools:
        if name not in tool_names():
            hint = ", ".join(sorted(tool_names())[:8]) or "none registered"
            findings.append(Finding(
                "unknown_tool", f"tool '{name}' is not registered; register it with @tool('{name}') "
                f"or use a known one ({hint})", state.name))
    if state.provider == "offline" and state.model and state.model not in offline_model_names():
        findings.append(Finding(
            "unknown_model", f"offline model '{state.model}' is not registered; register it with "
            f"@offline_model('{state.model}') or use provider openai", state.name))
    return findings


def _topology_findings(definition: Definition) -> list[Finding]:
    """What the declared topology promises: a pipeline runs one line; a supervisor/worker
    fan-out says how its workers' outputs are merged; a network of agents that hand work to
    each other has a cap on how often they may."""
    findings = []
    if definition.topology == "network" and definition.budgets.max_depth is None:
        findings.append(Finding(
            "depth_cap_required", "a network of agents can pass work around forever; set "
            "budgets.max_depth (how many handoffs a run may make)"))
    for state in definition.states.values():
        if state.type not in ("parallel", "map"):
            continue
        if definition.topology == "pipeline":
            findings.append(Finding(
                "pipeline_branches", "a pipeline runs its states one after another, but this state fans out; "
                "declare the topology supervisor_worker, or make the branches steps of the pipeline", state.name))
        if definition.topology == "supervisor_worker" and "reducer" not in state.raw:
            findings.append(Finding(
                "reducer_required", "a supervisor/worker fan-out must say how its workers' outputs are merged; "
                "add a reducer (collect, merge, highest_score, majority_vote or custom) with its on_conflict",
                state.name))
    return findings


def _where(scope: str) -> str:
    if not scope:
        return "the top level"
    parallel, _, branch = scope.rpartition("/")
    return f"branch '{branch}' of '{parallel}'" if branch != MAP_BRANCH else f"the iterator of map '{parallel}'"


def _fan_out_findings(state: Any) -> list[Finding]:
    from .registry import reducer_names

    findings = []
    for branch in state.branches:
        if branch.start_at not in branch.states:
            what = "the iterator" if state.type == "map" else f"branch '{branch.name}'"
            findings.append(Finding(
                "unknown_start", f"{what} starts at '{branch.start_at}', which is not one of "
                f"its states; set it to one of {', '.join(branch.states)}", state.name))
    join, reducer = state.join, state.reducer
    if join.mode != "all" and join.count is not None and join.count > len(state.branches):
        findings.append(Finding(
            "join_count", f"join {join.mode} {join.count} asks for more branches than the "
            f"{len(state.branches)} there are; lower the count or add branches", state.name))
    if reducer.strategy == "custom" and reducer.handler not in reducer_names():
        findings.append(Finding(
            "unknown_reducer", f"reducer handler '{reducer.handler}' is not registered; register it "
            f"with @reducer('{reducer.handler}') or use a built-in strategy", state.name))
    if reducer.strategy == "majority_vote" and reducer.on_conflict == "vote":
        findings.append(Finding(
            "conflict_policy", "a majority vote that ties cannot be settled by another vote; "
            "use on_conflict error, prefer_first or prefer_last", state.name))
    return findings


def parse_definition(doc: Any, known_handlers: set[str] | None = None) -> Definition:
    """Validate a document and return its typed form; raise DefinitionError with findings."""
    findings = [f for f in validate(doc, known_handlers) if f.severity == "error"]
    if findings:
        raise DefinitionError(findings)
    return build_definition(doc)


def _reachable_many(starts: list[str], edges: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    for start in starts:
        seen |= _reachable(start, edges)
    return seen
