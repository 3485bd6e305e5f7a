"""Dry run: step through a draft with a sample input and stubbed outputs, to see the path a run
would take through choices, guards, routes, approvals, branches and reducers, without running a
handler, a model or an effect.

What the person decides: ``stubs`` (state -> the output it returns; a state without a stub
returns ``{}``) and ``forced`` (state -> what happens there: an agent's route, an approval's
outcome — approve, reject or a label —, or "fail" for a step that fails, which follows its catch
rules). Choices evaluate their guards on the dry run's context, and a guard that reads a path
that does not exist says so. Branches of a parallel state run one after the other (in name
order, as the engine orders them), a map runs its iterator once per item, and the state's
reducer merges their outputs as the engine would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.definition import Definition, State, build_definition
from orchestrator.engine.guards import evaluate, get_path, path_exists
from orchestrator.engine.reducers import AggregationConflict, reduce_outputs

MAX_STEPS = 300
MAX_ITEMS = 20


@dataclass
class Step:
    state: str
    branch: str  # "" on the main line, else "fork/branch" (or "map/item 2")
    what: str  # what happened, in words
    output: Any = None


@dataclass
class DryRun:
    steps: list[Step] = field(default_factory=list)
    outcome: str = "succeeded"  # succeeded, failed, or stopped (a loop or a missing state)
    reason: str = ""
    output: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def visited(self) -> list[str]:
        return list(dict.fromkeys(step.state for step in self.steps))


class _Stop(Exception):
    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def _paths(condition: Any) -> list[str]:
    if not isinstance(condition, Mapping):
        return []
    if "not" in condition:
        return _paths(condition["not"])
    for key in ("all", "any"):
        if isinstance(condition.get(key), list):
            return [path for part in condition[key] for path in _paths(part)]
    return [condition["path"]] if isinstance(condition.get("path"), str) else []


class _Runner:
    def __init__(self, definition: Definition, stubs: Mapping[str, Any], forced: Mapping[str, str]) -> None:
        self.definition = definition
        self.stubs, self.forced = stubs, forced
        self.result = DryRun()

    def line(self, start: str, context: dict[str, Any], branch: str = "") -> Any:
        """Run a line from ``start`` to its end; returns the output of the state that ended it."""
        name: str | None = start
        output: Any = None
        while name is not None:
            if len(self.result.steps) >= MAX_STEPS:
                raise _Stop("stopped", f"more than {MAX_STEPS} steps: a loop the stubs never leave")
            state = self.definition.states.get(name)
            if state is None:
                raise _Stop("stopped", f"the path leads to {name!r}, which is not a state")
            name, output = self.visit(state, context, branch)
        return output

    def _step(self, state: State, branch: str, what: str, output: Any = None) -> None:
        self.result.steps.append(Step(state.name, branch, what, output))

    def visit(self, state: State, context: dict[str, Any], branch: str) -> tuple[str | None, Any]:
        forced = self.forced.get(state.name, "")
        if forced == "fail" and state.type not in ("succeed", "fail", "choice"):
            return self._fail(state, branch), None
        kind = state.type
        if kind == "succeed":
            output = get_path(context, state.output_path) if state.output_path else self.stubs.get(state.name)
            self._step(state, branch, "succeeds", output)
            return None, output
        if kind == "fail":
            self._step(state, branch, f"fails: {state.error or 'Failed'}")
            raise _Stop("failed", f"{state.name} fails the run ({state.error or 'Failed'})")
        if kind == "choice":
            return self._choice(state, context, branch), context.get(state.name)
        if kind in ("parallel", "map"):
            output = self._fork(state, context, branch)
        else:
            output = self.stubs.get(state.name, {})
            if kind not in ("approval", "agent") or (kind == "agent" and not state.routes):
                self._step(state, branch, _doing(state), output)
        context[state.context_key] = output
        if kind == "approval":
            return self._approval(state, forced, branch), output
        if kind == "agent" and state.routes:
            pick = forced or state.routes[0]
            if pick not in state.routes:
                raise _Stop("failed", f"{state.name} picks {pick!r}, which is not among its routes "
                                      f"({', '.join(state.routes)}): a run refuses it as an error")
            self._step(state, branch, f"asks the model (stubbed) and routes to {pick}"
                       + ("" if forced else " (its first route: force another)"), output)
            return pick, output
        if kind == "handoff":
            return state.to, output
        return (None if state.end else state.next), output

    def _fail(self, state: State, branch: str) -> str | None:
        for rule in state.catch:
            self._step(state, branch, f"fails (forced); its catch rule for {', '.join(rule.errors)} leads to "
                                      f"{rule.next}")
            return rule.next
        self._step(state, branch, "fails (forced), with no catch rule")
        raise _Stop("failed", f"{state.name} fails and nothing catches it")

    def _choice(self, state: State, context: dict[str, Any], branch: str) -> str | None:
        for i, rule in enumerate(state.choices, 1):
            missing = [p for p in _paths(rule.condition) if not path_exists(context, p)]
            for path in missing:
                self.result.warnings.append(f"{state.name}, rule {i}: the guard reads {path}, which does not "
                                            "exist at this point (it is false)")
            if evaluate(rule.condition, context):
                self._step(state, branch, f"rule {i} holds: goes to {rule.next}")
                return rule.next
        if state.default:
            self._step(state, branch, f"no rule holds: the default, {state.default}")
            return state.default
        raise _Stop("failed", f"{state.name}: no rule holds and there is no default (a run fails here)")

    def _approval(self, state: State, forced: str, branch: str) -> str | None:
        spec = state.approval
        outcome = forced or "approve"
        labelled = dict(spec.labelled) if spec else {}
        if outcome == "approve":
            target = None if state.end else state.next
        elif outcome == "reject":
            target = spec.reject_to if spec else None
            if target is None:
                raise _Stop("failed", f"{state.name} is rejected and has no reject target: the run fails")
        elif outcome in labelled:
            target = labelled[outcome]
        else:
            raise _Stop("stopped", f"{state.name} has no outcome {outcome!r}; use approve, reject"
                                   + "".join(f", {label}" for label in labelled))
        self._step(state, branch, f"decided: {outcome}" + ("" if forced else " (force another outcome)")
                   + (f", goes to {target}" if target else ""))
        return target

    def _fork(self, state: State, context: dict[str, Any], branch: str) -> Any:
        outputs: dict[str, Any] = {}
        if state.type == "map":
            items = get_path(context, state.items_path)
            if not isinstance(items, list):
                raise _Stop("failed", f"{state.name} maps over {state.items_path}, which is not a list here")
            (only,) = state.branches
            self._step(state, branch, f"maps over {len(items)} item(s) of {state.items_path}")
            for i, item in enumerate(items[:MAX_ITEMS]):
                outputs[str(i)] = self.line(only.start_at, {**context, "item": item, "index": i},
                                            f"{state.name}/item {i + 1}")
            if len(items) > MAX_ITEMS:
                self.result.warnings.append(f"{state.name}: only the first {MAX_ITEMS} items were stepped through")
        else:
            self._step(state, branch, f"runs {len(state.branches)} branch(es): "
                                      f"{', '.join(b.name for b in state.branches)}")
            for fork_branch in state.branches:
                outputs[fork_branch.name] = self.line(fork_branch.start_at, dict(context),
                                                      f"{state.name}/{fork_branch.name}")
        try:
            reduced = reduce_outputs(state.reducer, outputs)
        except AggregationConflict as exc:
            raise _Stop("failed", f"{state.name}: the {state.reducer.strategy} reducer meets a conflict under "
                                  f"{state.reducer.on_conflict}: {exc}") from exc
        for conflict in reduced.conflicts:
            self.result.warnings.append(f"{state.name}: branches disagreed; {state.reducer.on_conflict} chose "
                                        f"{conflict.chosen!r}")
        self._step(state, branch, f"joins: the {state.reducer.strategy} reducer merges the outputs", reduced.value)
        return reduced.value


def _doing(state: State) -> str:
    words = {"task": f"calls {state.handler} (stubbed)", "agent": "asks the model (stubbed)",
             "wait": f"waits {state.seconds if state.seconds is not None else state.seconds_path} s",
             "approval": "asks for a decision", "handoff": f"hands off to {state.to}",
             "subworkflow": f"runs {state.workflow} (stubbed)"}
    return words.get(state.type, state.type)


def dry_run(doc: Mapping[str, Any], run_input: Any, stubs: Mapping[str, Any] | None = None,
            forced: Mapping[str, str] | None = None) -> DryRun:
    """Step through ``doc`` (a definition the validator accepts) from its start."""
    definition = build_definition(dict(doc))
    runner = _Runner(definition, stubs or {}, {k: str(v) for k, v in (forced or {}).items()})
    try:
        runner.result.output = runner.line(definition.start_at, {"input": run_input})
    except _Stop as stop:
        runner.result.outcome, runner.result.reason = stop.outcome, stop.reason
    return runner.result
