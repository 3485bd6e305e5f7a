"""Attempt transitions: claim, complete, fail, lose, time out, dispatch again.

Each function is one transaction that locks the run row first (one lock order everywhere:
run, then attempt), checks the source status with a compare-and-set, appends its events
and schedules what comes next. A worker's result commits only while the attempt is still
its own (fencing by claim token).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q

from ..conf import ratchet_setting
from ..models import (
    AttemptKind,
    AttemptStatus,
    Effect,
    EventKind,
    FailureMode,
    Line,
    LineStatus,
    PauseReason,
    Run,
    RunStatus,
    StepAttempt,
)
from . import clock
from .attempts import claim_fields, retry_attempt
from .breakers import admit, breaker_for
from .budgets import limits
from .claim_read import claimed_event, read_for_claim
from .claims import Claim, Claimant, Usage
from .definition import definition_for_version
from .dispatch import dispatch_on_commit
from .errors import engine_error
from .eventlog import EventLog
from .fast_checkpoint import claim_in_one_statement, one_statement_paths, row_version
from .lines import is_live, store
from .model_calls import unreported_usage
from .ratelimits import conform, limit_for
from .retry import RetryRule, error_matches, next_retry_delay
from .rows import row_json
from .runstate import fail_run, finish_compensation, pause_run, save_run
from .scheduling import fail_line, go_on, take_catch
from .signals import send_on_commit
from .tool_guards import breakers_of, calls_due, limits_of

FAILED_STATUSES = (AttemptStatus.FAILED, AttemptStatus.TIMED_OUT)


# A job that arrives this little before its attempt is due (clocks of two workers differ by
# milliseconds) waits for it instead of going back on the timer.
EARLY_SLEEP_SECONDS = 0.05


def compensation_retry() -> tuple[RetryRule, ...]:
    return (RetryRule(errors=("*",), max_attempts=ratchet_setting("COMPENSATION_MAX_ATTEMPTS"), interval_seconds=1.0),)


def lock_run(run_id: Any) -> Run:
    """Lock one run's row: FOR NO KEY UPDATE, so rows that reference the run (attempts,
    events) can still be inserted beside it, and no join, so nothing shared is locked."""
    return Run.objects.select_for_update(no_key=True).get(pk=run_id)


def lock_run_of(attempt_id: int) -> Run | None:
    """Lock the run an attempt belongs to (the run row first, always), or None if it is gone."""
    run_id = StepAttempt.objects.filter(pk=attempt_id).values_list("run_id", flat=True).first()
    return lock_run(run_id) if run_id is not None else None


def visit_attempts(run: Run, attempt: StepAttempt, *statuses: str) -> int:
    """How many attempts of this visit (same state, sequence, kind and effect) have these statuses."""
    return StepAttempt.objects.filter(
        run=run, kind=attempt.kind, sequence=attempt.sequence, state_name=attempt.state_name,
        effect_id=attempt.effect_id, status__in=statuses,
    ).count()


def claim_attempt(attempt_id: int, worker: str) -> Claim | None:
    """Compare-and-set scheduled -> running with a lease. None: not ours to run (yet).

    The attempt is read outside a transaction: the claim itself is the compare-and-set, written
    with its event in one transaction (one statement on PostgreSQL: fast_checkpoint.py). On
    PostgreSQL, an attempt with nothing to check first is claimed by the read itself
    (claim_read.py)."""
    now = clock.now()
    if one_statement_paths():
        fields = claim_fields(worker, None, now)
        event = claimed_event(None, worker)
        attempt, waited = read_for_claim(attempt_id, fields, row_json(event))
        if attempt is not None and waited is not None:  # claimed already: nothing was to be checked
            _logged_claim(event, attempt, waited)
            return Claim(attempt=attempt, run=attempt.run, definition=definition_for_version(attempt.run.version),
                         token=fields["claim_token"], worker=worker, run_xmin=getattr(attempt, "run_xmin", None))
    else:
        # Not the version's document (its definition is cached by content hash): it is large,
        # and a claim needs none of it. A branch's line is read when the step needs it.
        found = StepAttempt.objects.select_related("run__version").defer("run__version__definition")
        attempt = found.filter(pk=attempt_id).first()
    if attempt is None or attempt.status != AttemptStatus.SCHEDULED:
        return None
    early = (attempt.not_before - now).total_seconds() if attempt.not_before else 0.0
    if 0 < early <= EARLY_SLEEP_SECONDS:
        # Dispatched a moment before it is due (the dispatching worker's clock runs a little
        # ahead of this one's): wait for it here, as the job ran anyway.
        time.sleep(early)
        now = clock.now()
    elif early > 0:
        # Far too early: back on its timer, or nobody would dispatch it until the stale check.
        StepAttempt.objects.filter(
            pk=attempt_id, status=AttemptStatus.SCHEDULED, dispatched_at=attempt.dispatched_at,
        ).update(dispatched_at=None)
        transaction.on_commit(clock.timers_changed.set)
        return None
    definition = definition_for_version(attempt.run.version)
    state = definition.states.get(attempt.state_name) if attempt.kind == AttemptKind.STEP else None
    if _held_back(attempt, state):
        return None
    now = clock.now()  # a short wait for a rate limit may have passed
    fields = claim_fields(worker, state, now)
    token = fields["claim_token"]
    scheduled_at = attempt.scheduled_at
    for name, value in fields.items():
        setattr(attempt, name, value)
    log = EventLog(attempt.run_id)
    log.add(EventKind.STEP_CLAIMED, attempt, worker=worker,
            queue_wait_ms=round((now - scheduled_at).total_seconds() * 1000, 1))
    if not mark_claimed(attempt, fields, log):
        return None
    return Claim(attempt=attempt, run=attempt.run, definition=definition, token=token, worker=worker,
                 run_xmin=getattr(attempt, "run_xmin", None))


def _logged_claim(event: Any, attempt: StepAttempt, waited: float) -> None:
    """The claim's event, as the statement that claimed the attempt wrote it."""
    event.run_id, event.attempt, event.state_name = attempt.run_id, attempt, attempt.state_name
    event.data["queue_wait_ms"] = waited
    send_on_commit(attempt.run_id, [event])


def mark_claimed(attempt: StepAttempt, fields: dict[str, Any], log: EventLog) -> bool:
    """Write the claim (``fields``) if the attempt is still scheduled, with its event."""
    if one_statement_paths():
        return claim_in_one_statement(attempt, fields, log)
    with transaction.atomic():
        if not StepAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.SCHEDULED).update(**fields):
            return False
        log.flush()
    return True


def wait_on(claim: Claim, log: EventLog) -> bool:
    """A claimed attempt that waits (on a child run, or a person) gives its worker and lease up.
    False when the claim is no longer ours: the discarded result is logged and flushed."""
    if fence(claim, status=AttemptStatus.WAITING, lease_expires_at=None, timeout_at=None):
        claim.attempt.status = AttemptStatus.WAITING
        return True
    log.add(EventKind.RESULT_DISCARDED, claim.attempt, worker=claim.worker)
    log.flush()
    return False


def _held_back(attempt: StepAttempt, state: Any) -> bool:
    """Put the step back (True) while a breaker of what it calls is open, or a rate limit has no
    slot for it yet: its handler's, or those of the tools an agent's visit is about to call."""
    tools = calls_due(attempt, state)
    handler_breaker, handler_limit = breaker_for(state), limit_for(state)
    for name, breaker in ([handler_breaker] if handler_breaker else []) + breakers_of(tools):
        if (wait := admit(name, breaker, attempt.pk)) > 0:
            _put_back(attempt, wait, EventKind.CIRCUIT_OPEN, handler=name, breaker=breaker.describe())
            return True
    for name, limit in ([handler_limit] if handler_limit else []) + limits_of(tools):
        if (wait := conform(name, limit, attempt.pk)) > 0:
            _put_back(attempt, wait, EventKind.THROTTLED, handler=name, limit=limit.describe())
            return True
    return False


def fence(claim: Claim, **changes: Any) -> bool:
    """Apply ``changes`` to the attempt only if it is still running under this claim."""
    return bool(
        StepAttempt.objects.filter(
            pk=claim.attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token
        ).update(**changes)
    )


def _charge(run: Run, usage: Usage) -> None:
    run.tokens_used += usage.tokens
    run.cost_used += usage.cost


def _charge_unreported(run: Run, attempt: StepAttempt) -> None:
    """An attempt that never reported its usage (its worker died): the model answers it paid
    for are charged to the run now (a resume replays them without paying again)."""
    usage = unreported_usage(attempt)
    if usage.tokens or usage.cost:
        StepAttempt.objects.filter(pk=attempt.pk).update(tokens=usage.tokens, cost=usage.cost)
        _charge(run, usage)


def _budget_breach(run: Run, definition: Any) -> str | None:
    budgets = limits(definition, run)
    if budgets.max_tokens is not None and run.tokens_used > budgets.max_tokens:
        return f"token budget of {budgets.max_tokens} exceeded ({run.tokens_used} used)"
    if budgets.max_cost is not None and float(run.cost_used) > budgets.max_cost:
        return f"cost budget of {budgets.max_cost} exceeded ({run.cost_used} used)"
    return None


def complete_attempt(claim: Claim, output: Any, usage: Usage, claimant: Claimant | None = None) -> Claim | None:
    """Checkpoint a succeeded attempt and schedule what comes next, in one transaction.

    Returns the next attempt when this worker claimed it inline (same queue, no delay).
    """
    now = clock.now()
    with transaction.atomic():
        run = lock_run(claim.attempt.run_id)
        log = EventLog(run)
        attempt = claim.attempt
        done = fence(claim, status=AttemptStatus.SUCCEEDED, output=output, finished_at=now,
                      tokens=usage.tokens, cost=usage.cost, lease_expires_at=None)
        if not done:
            log.add(EventKind.RESULT_DISCARDED, attempt, worker=claim.worker)
            log.flush()
            return None
        attempt.status = AttemptStatus.SUCCEEDED
        next_attempt = after_success(run, claim.definition, attempt, output, usage, log, claimant=claimant)
        save_run(run)
        log.flush()
        inline = next_attempt is not None and next_attempt.status == AttemptStatus.RUNNING
        # The next step may take the one-statement path when it is a plain task of the main line.
        xmin = row_version(run.pk) if inline and next_attempt.line_id is None else None
    if inline:
        return Claim(attempt=next_attempt, run=run, definition=claim.definition,
                     token=next_attempt.claim_token, worker=claim.worker, run_xmin=xmin)
    return None


def after_success(run: Run, definition: Any, attempt: StepAttempt, output: Any, usage: Usage, log: EventLog,
                  *, claimant: Claimant | None = None) -> StepAttempt | None:
    """An attempt succeeded (its row says so already): charge it, record its output, and go on."""
    _charge(run, usage)
    log.add(EventKind.STEP_SUCCEEDED, attempt,
            duration_ms=round((clock.now() - attempt.claimed_at).total_seconds() * 1000, 2))
    if attempt.kind == AttemptKind.COMPENSATION:
        finish_compensation(run, Effect.objects.get(pk=attempt.effect_id), log, ok=True, attempt=attempt)
        return None
    if not is_live(run, attempt.line):
        return None
    state = definition.state(attempt.state_name)
    if state.type in ("task", "agent", "subworkflow"):
        store(run, attempt.line, state.context_key, output, attempt)
    if _over_budget(run, definition, attempt, log):
        return None
    return go_on(run, definition, state, output, log, line=attempt.line, claimant=claimant)


def after_failure(run: Run, definition: Any, attempt: StepAttempt, error: dict[str, Any], failure_mode: str,
                  usage: Usage, log: EventLog, status: str = AttemptStatus.FAILED) -> None:
    """An attempt failed (its row says so already): charge it, then a broken budget fails the
    run at once (no retry spends more); else retry, catch, or fail the line."""
    _charge(run, usage)
    if attempt.kind == AttemptKind.STEP and _budget_breach(run, definition):
        kind = EventKind.STEP_TIMED_OUT if status == AttemptStatus.TIMED_OUT else EventKind.STEP_FAILED
        log.add(kind, attempt, error=error, failure_mode=failure_mode)
        _over_budget(run, definition, attempt, log)
    else:
        handle_failure(run, attempt, error, failure_mode, log, status=status)


def _over_budget(run: Run, definition: Any, attempt: StepAttempt, log: EventLog) -> bool:
    """Checked whenever usage is recorded (success or failure), before anything is scheduled."""
    breach = _budget_breach(run, definition)
    if breach is None or run.status != RunStatus.RUNNING:
        return False
    log.add(EventKind.BUDGET_EXCEEDED, attempt, reason=breach)
    fail_run(run, log, engine_error("BudgetExceeded", breach), FailureMode.COST_EXPLOSION,
             state_name=attempt.state_name, cause=attempt)  # the step that broke it, not a sibling
    return True


def fail_attempt(claim: Claim, error: dict[str, Any], failure_mode: str, usage: Usage,
                 status: str = AttemptStatus.FAILED) -> None:
    """A handler failed (or timed out): retry, catch, or fail the run, in one transaction.
    A failure that breaks a budget fails the run at once: no retry spends more."""
    now = clock.now()
    with transaction.atomic():
        run = lock_run(claim.attempt.run_id)
        log = EventLog(run)
        if not fence(claim, status=status, error=error, failure_mode=failure_mode, finished_at=now,
                      tokens=usage.tokens, cost=usage.cost, lease_expires_at=None):
            log.add(EventKind.RESULT_DISCARDED, claim.attempt, worker=claim.worker, error=error)
            log.flush()
            return
        after_failure(run, claim.definition, claim.attempt, error, failure_mode, usage, log, status)
        save_run(run)
        log.flush()


def handle_failure(run: Run, attempt: StepAttempt, error: dict[str, Any], failure_mode: str, log: EventLog,
                   status: str = AttemptStatus.FAILED, retryable: bool = True) -> None:
    """Retry per the state's policy, else follow a matching catch, else fail the run.

    ``retryable=False``: the retry rules do not apply (a step that lost its worker too often
    must not be retried by a ``*`` rule forever).
    """
    kind = EventKind.STEP_TIMED_OUT if status == AttemptStatus.TIMED_OUT else EventKind.STEP_FAILED
    log.add(kind, attempt, error=error, failure_mode=failure_mode)
    definition = definition_for_version(run.version)
    is_compensation = attempt.kind == AttemptKind.COMPENSATION
    rules = compensation_retry() if is_compensation else definition.state(attempt.state_name).retry
    failures = visit_attempts(run, attempt, *FAILED_STATUSES)
    delay = next_retry_delay(rules, error, failures) if retryable else None
    live = run.status == RunStatus.COMPENSATING if is_compensation else is_live(run, attempt.line)
    if delay is not None and live:
        log.add(EventKind.STEP_RETRIED, attempt, delay_seconds=round(delay, 3), failures=failures)
        retry_attempt(run, attempt, log, delay=delay)
        return
    if is_compensation:
        if run.status == RunStatus.COMPENSATING:
            finish_compensation(run, Effect.objects.get(pk=attempt.effect_id), log, ok=False, error=error,
                                attempt=attempt)
        return
    if not live:
        return
    state = definition.state(attempt.state_name)
    for index, rule in enumerate(state.catch):
        if error_matches(list(rule.errors), error):
            store(run, attempt.line, state.context_key, {"error": error})
            log.add(EventKind.STEP_CAUGHT, attempt, next=rule.next, error_type=error.get("type"))
            take_catch(run, definition, state, index, log, line=attempt.line)
            return
    fail_line(run, definition, attempt.line, error, failure_mode, log, state_name=state.name, cause=attempt)


def pause_for_effect(claim: Claim, error: dict[str, Any], effect_key: str) -> None:
    """An uncertain effect: the attempt fails and the run waits for an operator's decision."""
    now = clock.now()
    with transaction.atomic():
        run = lock_run(claim.attempt.run_id)
        log = EventLog(run)
        if not fence(claim, status=AttemptStatus.FAILED, error=error, finished_at=now,
                      failure_mode=FailureMode.DUPLICATE_SIDE_EFFECT, lease_expires_at=None):
            log.add(EventKind.RESULT_DISCARDED, claim.attempt, worker=claim.worker, error=error)
            log.flush()
            return
        log.add(EventKind.STEP_FAILED, claim.attempt, error=error,
                failure_mode=FailureMode.DUPLICATE_SIDE_EFFECT)
        line = claim.attempt.line
        if line is not None and is_live(run, line):
            # Only this branch waits for the operator; its siblings go on.
            Line.objects.filter(pk=line.pk).update(status=LineStatus.PAUSED)
            log.add(EventKind.BRANCH_PAUSED, claim.attempt, reason=PauseReason.UNCERTAIN_EFFECT, key=effect_key,
                    branch=line.path)
        elif line is None and run.status == RunStatus.RUNNING:
            pause_run(run, log, PauseReason.UNCERTAIN_EFFECT, claim.attempt, key=effect_key)
        save_run(run)
        log.flush()


def _put_back(attempt: StepAttempt, wait: float, kind: str, **data: Any) -> None:
    """Put a scheduled step back for ``wait`` seconds (its handler's rate limit or open circuit
    breaker): no worker held, not a failure, not a retry; the sweeper dispatches it when due.

    The wait counts from now, when Redis answered, not from when the claim began: counted from
    an earlier instant the step came back before the breaker half-opened and was put back again."""
    with transaction.atomic():
        if StepAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.SCHEDULED).update(
            not_before=clock.now() + timedelta(seconds=wait), dispatched_at=None,
        ):
            log = EventLog(attempt.run_id)
            log.add(kind, attempt, wait_ms=round(wait * 1000, 1), **data)
            log.flush()
            transaction.on_commit(clock.timers_changed.set)


def recover_lost(attempt_id: int, now: Any = None) -> bool:
    """A running attempt whose lease expired: mark it lost and resume the step elsewhere.

    Losses count toward MAX_RESUMES_PER_STEP whatever the retry rules say; past it the step
    (or compensation) fails as ``lost_progress`` without a retry.
    """
    now = now or clock.now()
    with transaction.atomic():
        run = lock_run_of(attempt_id)
        if run is None:
            return False
        log = EventLog(run)
        expired = StepAttempt.objects.filter(
            pk=attempt_id, status=AttemptStatus.RUNNING, lease_expires_at__lt=now
        )
        if not expired.update(status=AttemptStatus.LOST, finished_at=now, lease_expires_at=None):
            return False
        attempt = StepAttempt.objects.get(pk=attempt_id)
        log.add(EventKind.STEP_LOST, attempt, worker=attempt.worker)
        _charge_unreported(run, attempt)
        lost = visit_attempts(run, attempt, AttemptStatus.LOST)
        if attempt.kind == AttemptKind.STEP and _over_budget(run, definition_for_version(run.version), attempt, log):
            pass  # the answers it paid for used the budget up: nothing resumes
        elif lost > ratchet_setting("MAX_RESUMES_PER_STEP"):
            error = engine_error("Lost", f"the step's worker was lost {lost} times; giving up")
            StepAttempt.objects.filter(pk=attempt_id).update(error=error, failure_mode=FailureMode.LOST_PROGRESS)
            handle_failure(run, attempt, error, FailureMode.LOST_PROGRESS, log, status=AttemptStatus.LOST,
                           retryable=False)
        elif (run.status == RunStatus.COMPENSATING if attempt.kind == AttemptKind.COMPENSATION
              else is_live(run, attempt.line)):
            resumed = retry_attempt(run, attempt, log, resumed=True)
            run.resume_count += 1
            log.add(EventKind.STEP_RESUMED, resumed, lost_attempt=attempt.pk)
        save_run(run)
        log.flush()
    return True


def time_out_attempt(attempt_id: int, now: Any = None) -> bool:
    """A running attempt past its timeout (or heartbeat timeout) whose worker did not stop it."""
    now = now or clock.now()
    with transaction.atomic():
        run = lock_run_of(attempt_id)
        if run is None:
            return False
        log = EventLog(run)
        error = engine_error("Timeout", "the step ran past its timeout")
        if not StepAttempt.objects.filter(pk=attempt_id, status=AttemptStatus.RUNNING, timeout_at__lt=now).update(
            status=AttemptStatus.TIMED_OUT, error=error, failure_mode=FailureMode.TIMEOUT, finished_at=now,
            lease_expires_at=None,
        ):
            return False
        attempt = StepAttempt.objects.get(pk=attempt_id)
        _charge_unreported(run, attempt)
        handle_failure(run, attempt, error, FailureMode.TIMEOUT, log, status=AttemptStatus.TIMED_OUT)
        save_run(run)
        log.flush()
    return True


def redispatch(attempt_id: int, seen_dispatched_at: Any, reason: str = "job lost") -> bool:
    """Dispatch a scheduled attempt: a timer that came due (never dispatched yet), or one whose
    job is gone. Compare-and-set on ``dispatched_at``, so two sweepers at once dispatch it once."""
    now = clock.now()
    with transaction.atomic():
        attempt = StepAttempt.objects.filter(
            Q(dispatched_at=seen_dispatched_at), pk=attempt_id, status=AttemptStatus.SCHEDULED
        ).first()
        if attempt is None:
            return False
        updated = StepAttempt.objects.filter(
            pk=attempt_id, status=AttemptStatus.SCHEDULED, dispatched_at=seen_dispatched_at
        ).update(dispatched_at=now, dispatch_count=attempt.dispatch_count + 1)
        if not updated:
            return False
        log = EventLog(attempt.run_id)
        log.add(EventKind.STEP_DISPATCHED, attempt, dispatch_count=attempt.dispatch_count + 1, reason=reason)
        log.flush()
        dispatch_on_commit(attempt.pk, attempt.queue)
    return True
