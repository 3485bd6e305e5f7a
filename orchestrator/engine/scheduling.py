"""Scheduling: what happens when a line of execution enters a state. Runs inside a
transition's transaction, with the run's row locked.

Task and wait states become step attempts; choice, succeed and fail states are resolved at
once and leave events; a parallel state forks one line per branch. A branch that ends
counts toward its fork's join, in the same transaction as its last checkpoint, so the last
branch to finish (and only it) joins: the reducer merges the joined branches' outputs, the
rest are cancelled, and the parent line goes on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection

from ..models import (
    AttemptStatus,
    EventKind,
    FailureMode,
    Fork,
    ForkStatus,
    Line,
    LineStatus,
    Run,
    StepAttempt,
)
from ..models.runs import ACTIVE_ATTEMPT_STATUSES
from . import clock, guards
from .attempts import AttemptBatch, new_attempt
from .budgets import limits
from .claims import Claimant
from .contracts import check_input, mapped_input
from .definition import Definition, State
from .errors import ContractViolation, RouteRefused, engine_error, error_payload
from .eventlog import EventLog
from .lines import input_view, is_live, store, view
from .reducers import AggregationConflict, Reduced, reduce_outputs
from .retry import error_matches
from .rows import bulk_insert
from .runstate import fail_run, release_waiting, succeed_run

MAX_PASS_THROUGH = 1000


def enter_state(
    run: Run,
    definition: Definition,
    name: str,
    log: EventLog,
    *,
    claimant: Claimant | None = None,
    line: Line | None = None,
    batch: AttemptBatch | None = None,
) -> StepAttempt | None:
    """The line (the main line if None) moves into state ``name`` (a new visit). Returns the
    attempt created, if any (claimed inline when ``claimant`` may take it; saved by ``batch``
    when one is given and it is a task or a wait).

    Choice, succeed and fail are resolved here, in a loop, so a chain of choices costs no
    trip through a worker.
    """
    assert connection.in_atomic_block
    handed: Any = _NOTHING  # what a handoff passes to the state it leads to
    for _ in range(MAX_PASS_THROUGH):
        if not is_live(run, line):
            return None
        state = definition.state(name)
        budget = limits(definition, run).max_steps
        if budget is not None and run.steps_used >= budget:
            log.add(EventKind.BUDGET_EXCEEDED, state_name=name, budget="max_steps", limit=budget)
            error = engine_error("BudgetExceeded", f"step budget of {budget} used up before '{name}'")
            fail_run(run, log, error, FailureMode.COST_EXPLOSION)
            return None
        run.steps_used += 1
        if line is not None and line.position != name:
            line.position = name
            Line.objects.filter(pk=line.pk).update(position=name)
        if state.type == "choice":
            name, gate = _choose(run, line, state, log)
            if gate:
                return request_gate(run, definition, state, log, line=line, leads_to=name, edge=gate)
            continue
        if state.type == "handoff":
            handed = _hand_off(run, definition, line, state, log)
            if handed is _NOTHING:
                return None
            name = state.to  # type: ignore[assignment]
            continue
        if state.type == "succeed":
            seen = view(run, line)
            output = guards.get_path(seen, state.output_path) if state.output_path else seen
            end_line(run, definition, line, output, log, state_name=name)
            return None
        if state.type == "fail":
            error = engine_error(state.error or "Failed", state.cause or f"the run reached fail state '{name}'")
            fail_line(run, definition, line, error, FailureMode.REJECTED, log, state_name=name)
            return None
        path = line.path if line is not None else ""
        if state.type == "approval":
            from .approvals import request_approval  # approvals builds on this module

            return request_approval(run, definition, state, log, line=line, gate=False)
        if state.type == "parallel":
            return open_fork(run, definition, state, log, claimant=claimant, line=line)
        if state.type == "map":
            return open_map(run, definition, state, log, claimant=claimant, line=line)
        if state.type == "wait":
            seconds = state.seconds
            if seconds is None:
                value = guards.get_path(view(run, line), state.seconds_path)
                seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
            log.add(EventKind.WAIT_STARTED, state_name=name, seconds=seconds)
            return new_attempt(run, log, state_name=name, sequence=run.steps_used, queue=state.queue,
                               delay=max(seconds, 0.0), claimant=claimant, branch_path=path, line=line,
                               batch=batch)
        task_input = handed if handed is not _NOTHING else mapped_input(state, input_view(run, definition, state, line))
        return new_attempt(run, log, state_name=name, sequence=run.steps_used, queue=state.queue,
                           input=task_input, claimant=claimant, state=state, branch_path=path, line=line,
                           batch=batch)
    raise RuntimeError(f"more than {MAX_PASS_THROUGH} choice states in a row; the definition loops")


_NOTHING = object()


def _hand_off(run: Run, definition: Definition, line: Line | None, state: State, log: EventLog) -> Any:
    """Pass control to another agent with only the declared part of the context, counted against
    the run's delegation depth. Returns what is passed, or _NOTHING when the line failed."""
    cap = limits(definition, run).max_depth
    if cap is not None and run.depth_used >= cap:
        log.add(EventKind.BUDGET_EXCEEDED, state_name=state.name, budget="max_depth", limit=cap)
        error = engine_error("DepthExceeded", f"delegation depth cap of {cap} reached at handoff '{state.name}' "
                             f"to '{state.to}'; the agents keep passing the work on")
        fail_run(run, log, error, FailureMode.COST_EXPLOSION, state_name=state.name)
        return _NOTHING
    payload = mapped_input(state, view(run, line))
    try:
        check_input(state, payload)
    except ContractViolation as violation:
        fail_line(run, definition, line, error_payload(violation), FailureMode.CONTEXT_LOSS, log,
                  state_name=state.name)
        return _NOTHING
    run.depth_used += 1
    store(run, line, state.context_key, payload)
    log.add(EventKind.HANDED_OFF, state_name=state.name, to=state.to, depth=run.depth_used,
            fields=sorted(payload) if isinstance(payload, dict) else None)
    return payload


def _choose(run: Run, line: Line | None, state: State, log: EventLog) -> tuple[str, str]:
    """The state the first matching rule leads to, and the edge's name if a person must approve
    that transition ("choice:<i>"; "" when not)."""
    seen = view(run, line)
    for index, rule in enumerate(state.choices):
        if guards.evaluate(rule.condition, seen):
            log.add(EventKind.CHOICE_TAKEN, state_name=state.name, next=rule.next, rule=index)
            return rule.next, f"choice:{index}" if rule.gate is not None else ""
    log.add(EventKind.CHOICE_TAKEN, state_name=state.name, next=state.default, rule="default")
    return state.default, ""  # type: ignore[return-value]


def request_gate(run: Run, definition: Definition, state: State, log: EventLog, *, line: Line | None,
                 leads_to: str, edge: str = "") -> StepAttempt:
    """A person must approve this transition out of ``state`` before the line goes on."""
    from .approvals import request_approval  # approvals builds on this module

    return request_approval(run, definition, state, log, line=line, gate=True, leads_to=leads_to, edge=edge)


def take_catch(run: Run, definition: Definition, state: State, index: int, log: EventLog, *,
               line: Line | None) -> None:
    """Follow the state's catch rule ``index`` (through its gate, when it has one)."""
    rule = state.catch[index]
    if rule.gate is not None:
        request_gate(run, definition, state, log, line=line, leads_to=rule.next, edge=f"catch:{index}")
    else:
        enter_state(run, definition, rule.next, log, line=line)


def go_on(run: Run, definition: Definition, state: State, output: Any, log: EventLog, *,
          line: Line | None, claimant: Claimant | None = None) -> StepAttempt | None:
    """A state of ``line`` completed with ``output``: end the line, or enter the next state
    (through its gate first, when a person must approve the transition)."""
    target = state.next
    if state.type == "agent" and isinstance(output, dict):
        if output.get("tool_calls"):
            return enter_state(run, definition, state.name, log, claimant=claimant, line=line)
        route = output.get("route")
        if route is not None:
            if route not in state.routes:  # checked before the checkpoint too: never followed
                error = error_payload(RouteRefused(f"route '{route}' is not one of {', '.join(state.routes)}"))
                fail_line(run, definition, line, error, FailureMode.HANDLER_ERROR, log, state_name=state.name)
                return None
            log.add(EventKind.ROUTE_TAKEN, state_name=state.name, next=route)
            target = route
    if state.gate is not None:
        return request_gate(run, definition, state, log, line=line, leads_to=target or "")
    if target is None:  # the state ends its line
        end_line(run, definition, line, output, log, state_name=state.name)
        return None
    return enter_state(run, definition, target, log, claimant=claimant, line=line)


def end_line(run: Run, definition: Definition, line: Line | None, output: Any, log: EventLog,
             state_name: str = "") -> None:
    """A line reached its end: the main line succeeds the run; a branch counts toward its join."""
    if line is None:
        succeed_run(run, log, output=output, state_name=state_name)
        return
    line.status, line.output, line.finished_at = LineStatus.SUCCEEDED, output, clock.now()
    line.save(update_fields=["status", "output", "finished_at"])
    log.add(EventKind.BRANCH_FINISHED, state_name=state_name, branch=line.path, outcome="succeeded")
    fork = Fork.objects.defer("items").get(pk=line.fork_id)
    fork.done += 1
    fork.save(update_fields=["done"])
    if fork.status != ForkStatus.OPEN:
        return
    if fork.kind == "map":
        _map_settled(run, definition, fork, log)
    elif fork.done >= fork.needed:
        join(run, definition, fork, log)


def fail_line(run: Run, definition: Definition, line: Line | None, error: dict[str, Any], failure_mode: str,
              log: EventLog, *, state_name: str = "", cause: StepAttempt | None = None) -> None:
    """A line failed (no retry or catch left): the run fails, or the branch counts as failed
    and fails its fork once the join can no longer be reached."""
    if line is None:
        fail_run(run, log, error, failure_mode, state_name=state_name, cause=cause)
        return
    line.status, line.error, line.finished_at = LineStatus.FAILED, error, clock.now()
    line.save(update_fields=["status", "error", "finished_at"])
    log.add(EventKind.BRANCH_FINISHED, state_name=state_name, branch=line.path, outcome="failed",
            failure_mode=failure_mode)
    fork = Fork.objects.defer("items").get(pk=line.fork_id)
    fork.failed += 1
    fork.save(update_fields=["failed"])
    if fork.status != ForkStatus.OPEN:
        return
    if fork.total - fork.failed < fork.needed:
        fail_fork(run, definition, fork, error, failure_mode, log, cause=cause)
    elif fork.kind == "map":
        _map_settled(run, definition, fork, log)


def open_fork(run: Run, definition: Definition, state: State, log: EventLog, *, claimant: Claimant | None,
              line: Line | None) -> StepAttempt | None:
    """Start one line per branch. The worker may take the first branch's first step inline;
    the others go through RQ, so other workers run them at the same time."""
    if not _within_parallel_budget(run, definition, state, len(state.branches), log):
        return None
    now = clock.now()
    prefix = f"{line.path}/" if line is not None else ""
    total = len(state.branches)
    timeout = state.join.timeout_seconds
    fork = Fork.objects.create(
        run=run, line=line, state_name=state.name, sequence=run.steps_used,
        path=f"{prefix}{state.name}#{run.steps_used}", total=total, needed=state.join.needed(total),
        deadline_at=now + timedelta(seconds=timeout) if timeout else None, created_at=now,
    )
    log.add(EventKind.BRANCHES_STARTED, state_name=state.name, fork=fork.path,
            branches=[b.name for b in state.branches], join=state.join.mode, needed=fork.needed)
    children = [Line(run=run, fork=fork, branch=branch.name, ordinal=ordinal, path=f"{fork.path}/{branch.name}",
                     position=branch.start_at) for ordinal, branch in enumerate(state.branches)]
    bulk_insert(children)
    first = None
    batch = AttemptBatch()
    for branch, child in zip(state.branches, children, strict=True):
        attempt = enter_state(run, definition, branch.start_at, log, line=child,
                              claimant=claimant if first is None else None, batch=batch)
        if first is None and attempt is not None and attempt.status == AttemptStatus.RUNNING:
            first = attempt
        if attempt is None and not _still_open(fork):
            break  # a branch ended at once (a choice to a terminal) and the join already happened
    batch.save()
    return first


def _within_parallel_budget(run: Run, definition: Definition, state: State, adding: int, log: EventLog) -> bool:
    """Would ``adding`` more branches break the run's cap on agents at work at once? Then the
    run stops (cost explosion), like any budget: no branch of it starts."""
    cap = limits(definition, run).max_parallel_agents
    if cap is None:
        return True
    live = Line.objects.filter(run=run, status__in=(LineStatus.RUNNING, LineStatus.PAUSED)).count()
    if live + adding <= cap:
        return True
    log.add(EventKind.BUDGET_EXCEEDED, state_name=state.name, budget="max_parallel_agents", limit=cap)
    error = engine_error("BudgetExceeded", f"'{state.name}' would have {live + adding} branches at work at once; "
                         f"the run's cap is {cap} (set max_concurrency, or raise budgets.max_parallel_agents)")
    fail_run(run, log, error, FailureMode.COST_EXPLOSION, state_name=state.name)
    return False


def _still_open(fork: Fork) -> bool:
    """Read again: a branch that ended at once may have joined (or failed) the fork meanwhile."""
    return Fork.objects.filter(pk=fork.pk, status=ForkStatus.OPEN).exists()


def open_map(run: Run, definition: Definition, state: State, log: EventLog, *, claimant: Claimant | None,
             line: Line | None) -> StepAttempt | None:
    """One line per item of the list at ``items_path``, started as ``max_concurrency`` allows;
    the join comes when every item has settled, unless more failed than tolerated."""
    items = guards.get_path(view(run, line), state.items_path or "")
    if not isinstance(items, list):
        error = engine_error("MapItems", f"items_path '{state.items_path}' holds {type(items).__name__}, not a list")
        fail_line(run, definition, line, error, FailureMode.HANDLER_ERROR, log, state_name=state.name)
        return None
    now = clock.now()
    total = len(items)
    tolerated = int(total * state.tolerated_failure_percentage / 100)
    prefix = f"{line.path}/" if line is not None else ""
    fork = Fork.objects.create(
        run=run, line=line, kind="map", state_name=state.name, sequence=run.steps_used,
        path=f"{prefix}{state.name}#{run.steps_used}", total=total, needed=total - tolerated,
        limit=state.max_concurrency, items=items, created_at=now,
    )
    fork.line = line
    log.add(EventKind.BRANCHES_STARTED, state_name=state.name, fork=fork.path, items=total,
            max_concurrency=state.max_concurrency, tolerated_failures=tolerated)
    if total == 0:
        join(run, definition, fork, log)
        return None
    return _start_items(run, definition, fork, state, log, claimant)


def _start_items(run: Run, definition: Definition, fork: Fork, state: State, log: EventLog,
                 claimant: Claimant | None = None) -> StepAttempt | None:
    """Start the map's next items, up to its concurrency cap."""
    branch = state.branches[0]
    first = None
    while fork.started < fork.total and (fork.limit is None or fork.started - fork.done - fork.failed < fork.limit):
        if not _within_parallel_budget(run, definition, state, 1, log):
            return None
        index = fork.started
        fork.started += 1
        Fork.objects.filter(pk=fork.pk).update(started=fork.started)
        child = Line.objects.create(run=run, fork=fork, branch=str(index), ordinal=index,
                                    path=f"{fork.path}/{index}", position=branch.start_at,
                                    context={"item": fork.items[index], "index": index})
        child.fork = fork
        attempt = enter_state(run, definition, branch.start_at, log, line=child,
                              claimant=claimant if first is None else None)
        if first is None and attempt is not None and attempt.status == AttemptStatus.RUNNING:
            first = attempt
        if attempt is None and not _still_open(fork):
            break  # an item settled at once (a choice to a terminal) and ended the map
    return first


def _map_settled(run: Run, definition: Definition, fork: Fork, log: EventLog) -> None:
    """An item of a map settled: join once all have, else start the next ones."""
    if fork.done + fork.failed >= fork.total:
        join(run, definition, fork, log)
    else:
        _start_items(run, definition, fork, definition.state(fork.state_name), log)


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(f"{root}/") for root in roots)


def _close(run: Run, fork: Fork, log: EventLog, status: str, reason: str) -> None:
    """Close a fork: its branches still under way (and branches forked inside them) are
    cancelled, and their attempts fenced so a worker still running one is discarded."""
    fork.status, fork.joined_at = status, clock.now()
    fork.save(update_fields=["status", "joined_at"])
    roots = list(Line.objects.filter(fork=fork, status__in=(LineStatus.RUNNING, LineStatus.PAUSED))
                 .values_list("path", flat=True))
    if not roots:
        return
    now = clock.now()
    open_lines = [x for x in Line.objects.filter(run=run, status__in=(LineStatus.RUNNING, LineStatus.PAUSED))
                  if _inside(x.path, roots)]
    Line.objects.filter(pk__in=[x.pk for x in open_lines]).update(status=LineStatus.CANCELLED, finished_at=now)
    Fork.objects.filter(run=run, status=ForkStatus.OPEN, line__in=open_lines).update(status=ForkStatus.CANCELLED)
    active = [a for a in StepAttempt.objects.filter(run=run, status__in=ACTIVE_ATTEMPT_STATUSES)
              if _inside(a.branch_path, roots)]
    release_waiting(active, reason, log)
    StepAttempt.objects.filter(pk__in=[a.pk for a in active], status__in=ACTIVE_ATTEMPT_STATUSES).update(
        status=AttemptStatus.CANCELLED, finished_at=now, lease_expires_at=None)
    for attempt in active:
        log.add(EventKind.STEP_FAILED, attempt, reason=reason, status=AttemptStatus.CANCELLED)
    for x in open_lines:
        log.add(EventKind.BRANCH_FINISHED, state_name=x.position, branch=x.path, outcome="cancelled", reason=reason)


def join(run: Run, definition: Definition, fork: Fork, log: EventLog) -> None:
    """Enough branches succeeded: merge their outputs and let the parent line go on."""
    state = definition.state(fork.state_name)
    finished = Line.objects.filter(fork=fork, status=LineStatus.SUCCEEDED).order_by("finished_at", "id")
    joined = sorted(finished if fork.kind == "map" else list(finished)[:fork.needed], key=lambda x: x.ordinal)
    _close(run, fork, log, ForkStatus.JOINED, "joined without it")
    outputs = {x.branch: x.output for x in joined}
    try:
        if fork.kind == "map" and state.reducer.strategy == "collect":
            reduced = Reduced(list(outputs.values()))  # a map collects its items' outputs in order
        else:
            reduced = reduce_outputs(state.reducer, outputs)
    except AggregationConflict as conflict:
        for each in conflict.conflicts:
            log.add(EventKind.AGGREGATION_CONFLICT, state_name=state.name, **each.as_data())
        fail_fork(run, definition, fork, error_payload(conflict), FailureMode.CONFLICTING_AGGREGATION, log)
        return
    except Exception as exc:  # a custom reducer raised: the join fails like a step would
        fail_fork(run, definition, fork, error_payload(exc), FailureMode.HANDLER_ERROR, log)
        return
    for each in reduced.conflicts:
        log.add(EventKind.AGGREGATION_CONFLICT, state_name=state.name, **each.as_data())
    log.add(EventKind.JOINED, state_name=state.name, fork=fork.path, branches=list(outputs),
            conflicts=len(reduced.conflicts))
    parent = fork.line
    store(run, parent, state.context_key, reduced.value)
    go_on(run, definition, state, reduced.value, log, line=parent)


def fail_fork(run: Run, definition: Definition, fork: Fork, error: dict[str, Any], failure_mode: str,
              log: EventLog, *, cause: StepAttempt | None = None) -> None:
    """The join cannot happen (too many branches failed, a conflict, a timeout): the parallel
    state fails; its catch rules apply as a step's would."""
    state = definition.state(fork.state_name)
    if fork.status == ForkStatus.OPEN:
        _close(run, fork, log, ForkStatus.FAILED, "the join failed")
    else:
        Fork.objects.filter(pk=fork.pk).update(status=ForkStatus.FAILED)
    log.add(EventKind.JOIN_FAILED, state_name=state.name, fork=fork.path, error=error, failure_mode=failure_mode)
    parent = fork.line
    if not is_live(run, parent):
        return
    for index, rule in enumerate(state.catch):
        if error_matches(list(rule.errors), error):
            store(run, parent, state.context_key, {"error": error})
            log.add(EventKind.STEP_CAUGHT, state_name=state.name, next=rule.next, error_type=error.get("type"))
            take_catch(run, definition, state, index, log, line=parent)
            return
    fail_line(run, definition, parent, error, failure_mode, log, state_name=state.name, cause=cause)
