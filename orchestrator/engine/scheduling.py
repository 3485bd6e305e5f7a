"""Scheduling: what happens when a run enters a state. Runs inside a transition's transaction.

Task and wait states become step attempts; choice, succeed and fail states are resolved at
once, in the same transaction, and leave events.
"""

from __future__ import annotations

from django.db import connection

from ..models import EventKind, FailureMode, Run, RunStatus, StepAttempt
from . import guards
from .attempts import new_attempt
from .claims import Claimant
from .definition import Definition, State
from .errors import engine_error
from .eventlog import EventLog
from .runstate import fail_run, succeed_run

MAX_PASS_THROUGH = 1000


def enter_state(
    run: Run,
    definition: Definition,
    name: str,
    log: EventLog,
    *,
    claimant: Claimant | None = None,
) -> StepAttempt | None:
    """The run moves into state ``name`` (a new visit). Returns the attempt created, if any.

    Requires the run's row lock. Choice, succeed and fail are resolved here, in a loop, so a
    chain of choices costs no trip through a worker.
    """
    assert connection.in_atomic_block
    for _ in range(MAX_PASS_THROUGH):
        if run.status != RunStatus.RUNNING:
            return None
        state = definition.state(name)
        budget = definition.budgets.max_steps
        if budget is not None and run.steps_used >= budget:
            log.add(EventKind.BUDGET_EXCEEDED, state_name=name, budget="max_steps", limit=budget)
            error = engine_error("BudgetExceeded", f"step budget of {budget} used up before '{name}'")
            fail_run(run, log, error, FailureMode.COST_EXPLOSION)
            return None
        run.steps_used += 1
        if state.type == "choice":
            name = _choose(run, state, log)
            continue
        if state.type == "succeed":
            output = guards.get_path(run.context, state.output_path) if state.output_path else run.context
            succeed_run(run, log, output=output, state_name=name)
            return None
        if state.type == "fail":
            error = engine_error(state.error or "Failed", state.cause or f"the run reached fail state '{name}'")
            fail_run(run, log, error, FailureMode.REJECTED, state_name=name)
            return None
        if state.type == "wait":
            seconds = state.seconds
            if seconds is None:
                value = guards.get_path(run.context, state.seconds_path)
                seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
            log.add(EventKind.WAIT_STARTED, state_name=name, seconds=seconds)
            return new_attempt(run, log, state_name=name, sequence=run.steps_used, queue=state.queue,
                               delay=max(seconds, 0.0), claimant=claimant)
        task_input = guards.get_path(run.context, state.input_path or "input")
        return new_attempt(run, log, state_name=name, sequence=run.steps_used, queue=state.queue,
                           input=task_input, claimant=claimant, state=state)
    raise RuntimeError(f"more than {MAX_PASS_THROUGH} choice states in a row; the definition loops")


def _choose(run: Run, state: State, log: EventLog) -> str:
    for index, rule in enumerate(state.choices):
        if guards.evaluate(rule.condition, run.context):
            log.add(EventKind.CHOICE_TAKEN, state_name=state.name, next=rule.next, rule=index)
            return rule.next
    log.add(EventKind.CHOICE_TAKEN, state_name=state.name, next=state.default, rule="default")
    return state.default  # type: ignore[return-value]
