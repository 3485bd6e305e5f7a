"""The RQ job: claim an attempt, run its handler, checkpoint, and go on with the run.

A worker that finishes a step runs the run's next step itself when it is on the same
queue and due now (claimed inside the same transaction that checkpointed the last one), so
the trip through Redis is only for changing queue, waiting, retrying or recovering.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DataError, IntegrityError, close_old_connections

from ..conf import ratchet_setting
from ..models import AttemptKind, AttemptStatus, Effect, FailureMode
from . import contracts
from .agent import run_agent
from .approvals import reopen_claimed
from .attempts import step_timeout
from .breakers import note_outcome
from .children import start_child
from .claims import Claim, Claimant, Usage
from .context import StepContext
from .dispatch import send_held
from .effects import resolve_compensation
from .errors import Cancelled, ContractViolation, EffectUncertain, StepTimeout, engine_error, error_payload
from .fast_branch import end_branch, ends_a_branch
from .fast_checkpoint import checkpoint_one_statement, eligible
from .lease import lease_keeper
from .reconnect import with_db_retry
from .registry import get_handler
from .storable import ensure_storable
from .transitions import claim_attempt, complete_attempt, fail_attempt, pause_for_effect

logger = logging.getLogger("ratchet.executor")
# Set by the worker on a warm shutdown (SIGTERM): finish the current step, then hand the
# run's next step to RQ instead of running it here, so a deploy never waits out a long run.
WARM_SHUTDOWN = threading.Event()


def worker_name() -> str:
    return os.environ.get("RATCHET_WORKER_NAME") or f"{socket.gethostname()}.{os.getpid()}"


class _Deadline(BaseException):
    """Raised by SIGALRM inside a handler; a BaseException so handlers cannot swallow it."""


@contextmanager
def step_deadline(seconds: float) -> Iterator[None]:
    """Interrupt the handler after ``seconds`` (main thread only; the sweeper backs this up)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_attempt(attempt_id: int) -> None:
    """Entry point of every RQ job: a second delivery of the same job does nothing."""
    close_old_connections()
    worker = worker_name()
    claim = with_db_retry(lambda: claim_attempt(attempt_id, worker))
    if claim is None:
        return  # claimed already (a second delivery), finished, or not due: nothing to do
    keeper = lease_keeper()
    try:
        chain = ratchet_setting("INLINE_CHAIN_LIMIT")
        while claim is not None:
            send_held()  # the jobs the last step dispatched go now, not after this one
            chain -= 1
            claimant = Claimant(worker=worker, queue=claim.attempt.queue, chain_left=chain)
            lost = keeper.hold(claim)
            claim = execute(claim, claimant, lost)
    finally:
        keeper.hold(None)


def _unless_stopping(claimant: Claimant | None) -> Claimant | None:
    """Asked to stop while the step ran: the run's next step goes through RQ, not this worker."""
    return None if WARM_SHUTDOWN.is_set() else claimant


def execute(claim: Claim, claimant: Claimant | None, lost: threading.Event) -> Claim | None:
    """Run one claimed attempt to its checkpoint. Returns the next attempt claimed inline."""
    attempt = claim.attempt
    if attempt.kind == AttemptKind.COMPENSATION:
        return _execute_compensation(claim, lost)
    state = claim.state
    if state.type == "approval" or attempt.kind == AttemptKind.GATE:
        reopen_claimed(claim)  # asked again (a redrive, a reopened branch): it waits for a person
        return None
    if state.type == "wait":
        return checkpoint(claim, None, Usage(), _unless_stopping(claimant))
    if state.type == "subworkflow":
        return _start_sub_workflow(claim)
    ctx = StepContext(claim, lost)
    deadline = step_timeout(state)  # heartbeat deadlines are the sweeper's to enforce
    try:
        contracts.check_input(state, ctx.input)
        with step_deadline(deadline):
            if state.type == "agent":
                output = run_agent(ctx, state)  # checks its own output: a refused answer is discarded
            else:
                output = get_handler(state.handler)(ctx)
                contracts.check_output(state, output)
        note_outcome(attempt, state, succeeded=True)
        ctx.check_cancelled()
        if ctx.uncertain_key is not None:
            raise EffectUncertain(ctx.uncertain_key)  # the handler caught it; the step still pauses
        ensure_storable(output, "the handler's output")
    except Cancelled:
        logger.info("attempt %s is no longer ours; stopping", attempt.pk)
        return None
    except _Deadline:
        note_outcome(attempt, state, succeeded=False)
        error = error_payload(StepTimeout(f"step ran past its timeout of {deadline:.1f}s"), name="Timeout")
        with_db_retry(lambda: fail_attempt(claim, error, FailureMode.TIMEOUT, ctx.usage_total, AttemptStatus.TIMED_OUT))
        return None
    except ContractViolation as violation:
        logger.info("attempt %s (%s) broke its contract: %s", attempt.pk, state.name, violation)
        payload = error_payload(violation)
        with_db_retry(lambda: fail_attempt(claim, payload, FailureMode.CONTEXT_LOSS, ctx.usage_total))
        return None
    except EffectUncertain as uncertain:
        payload, key = error_payload(uncertain), uncertain.key
        with_db_retry(lambda: pause_for_effect(claim, payload, key))
        return None
    except Exception as exc:
        logger.info("attempt %s (%s) failed: %s: %s", attempt.pk, state.name, type(exc).__name__, exc)
        note_outcome(attempt, state, succeeded=False)
        payload = error_payload(exc)
        with_db_retry(lambda: fail_attempt(claim, payload, FailureMode.HANDLER_ERROR, ctx.usage_total))
        return None
    return checkpoint(claim, output, ctx.usage_total, _unless_stopping(claimant))


def checkpoint(claim: Claim, output: Any, usage: Usage, claimant: Claimant | None) -> Claim | None:
    """Complete the attempt; a checkpoint whose values the database refuses fails the attempt
    at once, instead of leaving it running until its lease lapses and running the handler again.

    Only refusals of the data itself (DataError, IntegrityError) count: a lost connection is
    retried, and a transient server error (a deadlock, a serialization failure) propagates, so
    the lease lapses and the step resumes, as it would after a crash.
    """
    if eligible(claim):
        taken, following = checkpoint_one_statement(claim, output, usage, claimant)
        if taken:
            return following
    elif ends_a_branch(claim):
        ended, following = end_branch(claim, output, usage, claimant)
        if ended:
            return following
    try:
        return with_db_retry(lambda: complete_attempt(claim, output, usage, claimant))
    except (DataError, IntegrityError) as exc:
        logger.warning("checkpoint of attempt %s refused by the database: %s", claim.attempt.pk, exc)
        error = engine_error("CheckpointRefused", f"the database refused the step's checkpoint: {exc}"[:2000])
        with_db_retry(lambda: fail_attempt(claim, error, FailureMode.HANDLER_ERROR, usage))
        return None


def _start_sub_workflow(claim: Claim) -> None:
    """The attempt waits for a child run (children.py); its input contract is checked first."""
    try:
        contracts.check_input(claim.state, claim.attempt.input)
    except ContractViolation as violation:
        error = error_payload(violation)
        with_db_retry(lambda: fail_attempt(claim, error, FailureMode.CONTEXT_LOSS, Usage()))
        return None
    with_db_retry(lambda: start_child(claim))
    return None


def _execute_compensation(claim: Claim, lost: threading.Event) -> None:
    effect = Effect.objects.get(pk=claim.attempt.effect_id)
    try:
        resolve_compensation(effect.compensate)(effect.result, effect.idempotency_key)
        if lost.is_set():
            return None
    except Exception as exc:
        payload = error_payload(exc)
        with_db_retry(lambda: fail_attempt(claim, payload, FailureMode.HANDLER_ERROR, Usage()))
        return None
    checkpoint(claim, None, Usage(), None)
    return None
