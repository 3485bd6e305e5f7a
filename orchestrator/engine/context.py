"""The handler SDK: what a step handler receives.

    from orchestrator.sdk import handler

    @handler("charge_card")
    def charge_card(ctx):
        receipt = ctx.effect("charge", lambda key: payments.charge(ctx.input["card"], key))
        ctx.usage(tokens=120, cost=0.0004)
        return {"receipt": receipt}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

from ..models import AttemptStatus, StepAttempt
from . import clock
from .attempts import step_timeout
from .claims import Claim, Usage
from .effects import Check, perform_effect
from .errors import Cancelled, EffectUncertain
from .lines import view
from .reconnect import with_db_retry


class StepContext:
    def __init__(self, claim: Claim, lost: threading.Event | None = None):
        self._claim = claim
        self._lost = lost or threading.Event()
        self.usage_total = Usage()
        # Set when an effect turned out uncertain: the step pauses even if the handler caught it.
        self.uncertain_key: str | None = None
        state = claim.state
        self.run_id = claim.attempt.run_id
        self.state_name = claim.attempt.state_name
        self.attempt_number = claim.attempt.attempt
        self.input: Any = claim.attempt.input
        self.args: dict[str, Any] = dict(state.args)
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"ratchet.handler.{state.handler}"),
            {"run": str(self.run_id), "state": self.state_name},
        )

    @cached_property
    def context(self) -> dict[str, Any]:
        """The run's context as this step's line of execution sees it (a branch sees its own
        outputs); read from the database only when the handler asks for it."""
        return view(self._claim.run, self._claim.attempt.line)

    def effect(
        self,
        key: str,
        fn: Callable[[str], Any],
        compensate: Callable[..., Any] | None = None,
        *,
        idempotent: bool = False,
        check: Check | None = None,
        shared: bool = False,
    ) -> Any:
        """Do a side effect at most once for this step: ``fn`` gets the effect's idempotency key.

        A confirmed effect is not run again; its stored result is returned. The key belongs to
        this step (state and visit); ``shared=True`` makes it one effect for the whole run.
        When an earlier try's outcome is unknown (its worker died inside ``fn``, or ``fn``
        raised anything but ``EffectNotDone``):

        - ``check(idempotency_key)`` asks the downstream: it returns the effect's result, or
          ``NOT_FOUND`` (then ``fn`` runs);
        - else ``idempotent=True`` (``fn`` hands the key downstream) retries it;
        - else the run pauses until an operator decides.

        ``compensate(result, idempotency_key)`` undoes the effect if the run later fails.
        """
        self.check_cancelled()
        try:
            return perform_effect(self._claim, key, fn, compensate=compensate, idempotent=idempotent,
                                  check=check, shared=shared)
        except EffectUncertain:
            self.uncertain_key = key
            raise

    @property
    def claim(self) -> Claim:
        """The attempt this context runs under (for the engine's own step kinds)."""
        return self._claim

    def heartbeat(self, progress: Any = None) -> None:
        """Say the step is alive (and how far it got); raises Cancelled if it is no longer ours."""
        self.check_cancelled()
        now = clock.now()
        claim = self._claim
        changes: dict[str, Any] = {"heartbeat_at": now, "progress": progress}
        beat = claim.state.heartbeat_seconds
        if beat:
            hard = claim.attempt.claimed_at + timedelta(seconds=step_timeout(claim.state))
            changes["timeout_at"] = min(hard, now + timedelta(seconds=beat))
        updated = with_db_retry(lambda: StepAttempt.objects.filter(
            pk=claim.attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token
        ).update(**changes))
        if not updated:
            self._lost.set()
            raise Cancelled()

    def usage(self, tokens: int = 0, cost: float = 0) -> None:
        """Add model tokens and money spent by this step; they count against the run's budgets."""
        self.usage_total.add(tokens, cost)

    def check_cancelled(self) -> None:
        if self._lost.is_set():
            raise Cancelled()


__all__ = ["StepContext"]
