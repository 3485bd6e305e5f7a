"""Sub-workflows: a state that starts a child run of another published workflow and waits.

- A worker claims the sub-workflow state's attempt like any step and starts the child run in
  the same transaction that moves the attempt to ``waiting`` (no worker or lease is held
  while the child runs). Each attempt starts its own child, so a retry starts a new one.
- The child belongs to the parent: cancelling or failing the parent (or closing the branch it
  waits in) cancels the child; the child runs within what is left of the parent's token, cost
  and depth budgets, and its usage is charged to the parent when it ends; the parent's saga
  undoes the child's confirmed effects too.
- When the child ends, its parent's attempt settles (``settle_child``): right after the
  child's last transaction commits, and by the sweeper should that process die first.

Lock order across two runs: **the parent's run row, then the child's**. Only parent-side
transactions (settle, cancel, fail, a closing fork) lock both, always in that order; a
child's own transitions lock the child alone and never touch the parent's rows.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from ..models import AttemptStatus, EventKind, FailureMode, Run, RunStatus, StepAttempt, Workflow, WorkflowVersion
from ..models.runs import TERMINAL_RUN_STATUSES
from . import clock
from .budgets import lent_to_child, limits, run_deadline
from .claims import Claim, Usage
from .contracts import check_output, check_run_input
from .definition import definition_for_version
from .errors import ContractViolation, InputInvalid, WorkflowNotFound, engine_error, error_payload
from .eventlog import EventLog
from .reconnect import with_db_retry
from .runstate import fail_run, save_run
from .scheduling import enter_state
from .transitions import after_failure, after_success, lock_run, wait_on

logger = logging.getLogger("ratchet.children")


def start_child(claim: Claim) -> Run | None:
    """Start the child run of a claimed sub-workflow attempt; the attempt waits for it."""
    attempt, state = claim.attempt, claim.state
    with transaction.atomic():
        parent = lock_run(attempt.run_id)
        log = EventLog(parent)
        if not wait_on(claim, log):
            return None
        cap = limits(claim.definition, parent).max_depth
        try:
            version = _version_to_start(state.workflow, state.version)  # type: ignore[arg-type]
        except WorkflowNotFound as missing:
            _fail_waiting(parent, claim.definition, attempt, error_payload(missing), FailureMode.HANDLER_ERROR, log)
            version = None
        if version is not None and cap is not None and parent.depth_used >= cap:
            log.add(EventKind.BUDGET_EXCEEDED, attempt, budget="max_depth", limit=cap)
            error = engine_error("DepthExceeded", f"delegation depth cap of {cap} reached: '{state.name}' "
                                 f"cannot start a run of '{state.workflow}'")
            fail_run(parent, log, error, FailureMode.COST_EXPLOSION, state_name=state.name)
            version = None
        if version is not None:
            try:
                check_run_input(definition_for_version(version), attempt.input)
            except InputInvalid as invalid:
                _fail_waiting(parent, claim.definition, attempt, error_payload(invalid), FailureMode.CONTEXT_LOSS, log)
                version = None
        child = None
        if version is not None:
            child = _open_child(parent, claim.definition, attempt, version)
            log.add(EventKind.CHILD_STARTED, attempt, child_run=str(child.pk), workflow=version.workflow.name,
                    version=version.number)
        save_run(parent)
        log.flush()
    return child


def _version_to_start(name: str, number: int | None) -> WorkflowVersion:
    workflow = Workflow.objects.filter(name=name).first()
    version = None
    if workflow is not None:
        versions = workflow.versions.select_related("workflow")
        version = versions.filter(number=number).first() if number else versions.order_by("-number").first()
    if version is None:
        which = f"version {number} of " if number else ""
        raise WorkflowNotFound(f"no published {which}workflow '{name}' to start as a sub-workflow")
    return version


def _open_child(parent: Run, definition: Any, attempt: StepAttempt, version: WorkflowVersion) -> Run:
    """The child run, created under the parent's lock (a new row: nothing to lock out of order)."""
    now = clock.now()
    child_definition = definition_for_version(version)
    child = Run.objects.create(
        workflow=version.workflow, version=version, input=attempt.input, context={"input": attempt.input},
        started_by=parent.started_by, parent=parent, parent_attempt=attempt, depth_used=parent.depth_used + 1,
        budget_caps=lent_to_child(definition, parent), deadline_at=run_deadline(child_definition, now),
    )
    child_log = EventLog(child, actor=parent.started_by)
    child_log.add(EventKind.RUN_STARTED, version=version.number, parent_run=str(parent.pk),
                  parent_state=attempt.state_name)
    enter_state(child, child_definition, child_definition.start_at, child_log)
    save_run(child)
    child_log.flush()
    return child


def settle_child(child_id: Any) -> bool:
    """The child ended: its parent's waiting attempt succeeds with the child's output (checked
    against the state's output contract) or fails with its error; retry and catch rules apply.
    Safe to call again (a compare-and-set on the waiting attempt). Returns whether it settled."""
    with transaction.atomic():
        ids = Run.objects.filter(pk=child_id).values_list("parent_id", "parent_attempt_id").first()
        if ids is None or ids[0] is None or ids[1] is None:
            return False
        parent = lock_run(ids[0])
        child = lock_run(child_id)  # the parent's row first, then the child's
        if child.status not in TERMINAL_RUN_STATUSES:
            return False
        attempt = StepAttempt.objects.select_related("line__fork").filter(
            pk=ids[1], status=AttemptStatus.WAITING).first()
        if attempt is None:
            return False
        definition = definition_for_version(parent.version)
        log = EventLog(parent)
        log.add(EventKind.CHILD_FINISHED, attempt, child_run=str(child.pk), status=child.status,
                tokens=child.tokens_used, cost=str(child.cost_used))
        usage = Usage()
        usage.add(child.tokens_used, child.cost_used)
        error, mode = _child_failure(child, definition.state(attempt.state_name))
        if error is None:
            StepAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.WAITING).update(
                status=AttemptStatus.SUCCEEDED, output=child.output, finished_at=clock.now(),
                tokens=usage.tokens, cost=usage.cost)
            attempt.status = AttemptStatus.SUCCEEDED
            after_success(parent, definition, attempt, child.output, usage, log)
        else:
            StepAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.WAITING).update(
                status=AttemptStatus.FAILED, error=error, failure_mode=mode, finished_at=clock.now(),
                tokens=usage.tokens, cost=usage.cost)
            after_failure(parent, definition, attempt, error, mode, usage, log)
        save_run(parent)
        log.flush()
    return True


def _child_failure(child: Run, state: Any) -> tuple[dict[str, Any] | None, str]:
    if child.status == RunStatus.SUCCEEDED:
        try:
            check_output(state, child.output)
        except ContractViolation as violation:
            return error_payload(violation), FailureMode.CONTEXT_LOSS
        return None, ""
    cause = (child.error or {}).get("message", "")
    error = engine_error("ChildRunFailed", f"sub-workflow run {child.pk} of '{child.workflow.name}' ended "
                         f"{child.status}: {cause}"[:2000])
    error["child_error"] = child.error
    return error, child.failure_mode or FailureMode.HANDLER_ERROR


def _fail_waiting(run: Run, definition: Any, attempt: StepAttempt, error: dict[str, Any], mode: str,
                  log: EventLog) -> None:
    StepAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.WAITING).update(
        status=AttemptStatus.FAILED, error=error, failure_mode=mode, finished_at=clock.now())
    after_failure(run, definition, attempt, error, mode, Usage(), log)


def settle_soon(child_id: Any) -> None:
    """Settle the parent right after the child's final transaction commits (a failure here is
    logged: the sweeper settles it on its next round)."""

    def settle() -> None:
        try:
            with_db_retry(lambda: settle_child(child_id))
        except Exception:
            logger.warning("settling the parent of run %s failed; the sweeper will", child_id, exc_info=True)

    transaction.on_commit(settle)


def unsettled_children(limit: int) -> list[Any]:
    """Children that ended while their parent's attempt still waits (for the sweeper)."""
    return list(Run.objects.filter(status__in=TERMINAL_RUN_STATUSES, parent_attempt__status=AttemptStatus.WAITING)
                .values_list("pk", flat=True)[:limit])
