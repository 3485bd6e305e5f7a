"""Test one state for real: its handler runs once on a worker that reads the state's queue, with
a context the person gives (the run's input and earlier outputs; the step's input is mapped
from it as in a run), and every ``ctx.effect`` recorded instead of done (the effect's
function is never called). The trial shows the output, the effects it would have made, the usage
it reported and the time it took. Nothing of a run is created; the engine's ledger is untouched.

An effect's result is a stand-in: a mapping that answers any key with a placeholder string, so
a handler that reads fields of a receipt goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestrator.engine import contracts
from orchestrator.engine.claims import Usage
from orchestrator.engine.definition import build_state
from orchestrator.engine.dispatch import queue
from orchestrator.engine.errors import error_payload
from orchestrator.engine.registry import get_handler, handler_names
from orchestrator.engine.storable import ensure_storable

from .edits import EditError, find
from .models import Draft, Trial

logger = logging.getLogger("ratchet.designer.trials")
JOB_FUNCTION = "designer.trials.run_trial"
TIMEOUT_SECONDS = 120  # the job's limit when the state sets none


class StubbedResult(dict):
    """What a recorded effect returns: any key answers ``<stubbed key>``."""

    def __missing__(self, key: Any) -> str:
        return f"<stubbed {key}>"


class TrialContext:
    """The handler SDK (``orchestrator.sdk``'s StepContext) for a trial: the same attributes and
    methods, with effects recorded and not done, and nothing written to a run."""

    def __init__(self, trial: Trial, state: Any) -> None:
        self.run_id = None
        self.state_name = trial.state_name
        self.attempt_number = 1
        # What the step sees: the context the person gave, and its input mapped from it as in a run.
        self.context: dict[str, Any] = trial.context if isinstance(trial.context, dict) else {}
        self.input = contracts.mapped_input(state, self.context)
        self.args: dict[str, Any] = dict(state.args)
        self.logger = logging.LoggerAdapter(logging.getLogger(f"ratchet.handler.{state.handler}"),
                                            {"trial": trial.pk, "state": trial.state_name})
        self.usage_total = Usage()
        self.effects: list[dict[str, Any]] = []
        self.uncertain_key: str | None = None

    def effect(self, key: str, fn: Callable[[str], Any], compensate: Callable[..., Any] | None = None, *,
               idempotent: bool = False, check: Any = None, shared: bool = False) -> Any:
        self.effects.append({"key": key, "function": getattr(fn, "__qualname__", repr(fn)),
                             "compensate": getattr(compensate, "__qualname__", None) if compensate else None,
                             "idempotent": idempotent, "checkable": check is not None, "shared": shared})
        return StubbedResult(stubbed=True, key=key)

    def heartbeat(self, progress: Any = None) -> None:
        """Nothing to renew in a trial."""

    def usage(self, tokens: int = 0, cost: float = 0) -> None:
        self.usage_total.add(tokens, cost)

    def check_cancelled(self) -> None:
        """A trial is never taken over."""


def start_trial(draft: Draft, state_name: str, context: dict[str, Any], user: Any = None) -> Trial:
    """Record a trial of the draft's current ``state_name`` and put its job on the state's queue.
    ``context``: what the step sees (``{"input": ...}`` and the outputs of earlier states)."""
    from .drafts import snapshot

    doc = snapshot(draft).doc
    _, raw = find(doc, state_name)
    if raw.get("type") != "task":
        raise EditError(f"{state_name} is a {raw.get('type')} state: only a task's handler can be tried")
    if raw.get("handler") not in handler_names():
        raise EditError(f"{state_name}'s handler {raw.get('handler')!r} is not registered: choose one in its panel")
    state = build_state(state_name, dict(raw))
    trial = Trial.objects.create(draft=draft, revision=draft.revision, state_name=state_name, state=dict(raw),
                                 queue=state.queue, context=context,
                                 requested_by=user if getattr(user, "pk", None) else None)
    transaction.on_commit(lambda: enqueue(trial))
    return trial


def enqueue(trial: Trial) -> None:
    timeout = int(trial.state.get("timeout_seconds") or TIMEOUT_SECONDS) + 5
    queue(trial.queue).enqueue(JOB_FUNCTION, trial.pk, job_id=f"ratchet-trial-{trial.pk}", job_timeout=timeout,
                               result_ttl=0, failure_ttl=3600)


def run_trial(trial_id: int) -> None:
    """The worker's side: run the handler once and record what happened."""
    claimed = Trial.objects.filter(pk=trial_id, status=Trial.Status.QUEUED).update(
        status=Trial.Status.RUNNING, worker=f"{socket.gethostname()}:{os.getpid()}")
    if not claimed:
        return  # delivered twice, or already finished
    trial = Trial.objects.get(pk=trial_id)
    state = build_state(trial.state_name, trial.state)
    ctx = TrialContext(trial, state)
    started = time.perf_counter()
    try:
        contracts.check_input(state, ctx.input)
        output = get_handler(state.handler)(ctx)
        contracts.check_output(state, output)
        ensure_storable(output, "the handler's output")
        trial.status, trial.output = Trial.Status.SUCCEEDED, output
    except Exception as exc:
        trial.status, trial.error = Trial.Status.FAILED, error_payload(exc)
    trial.duration_ms = (time.perf_counter() - started) * 1000
    trial.effects = ctx.effects
    trial.usage = {"tokens": ctx.usage_total.tokens, "cost": float(ctx.usage_total.cost)}
    trial.finished_at = timezone.now()
    trial.save(update_fields=["status", "output", "error", "duration_ms", "effects", "usage", "finished_at"])
    logger.info("trial %s of %s.%s %s in %.1f ms", trial.pk, trial.draft_id, trial.state_name, trial.status,
                trial.duration_ms)
