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
from typing import Any

from django.utils import timezone

from ..models import AttemptStatus, StepAttempt
from .attempts import step_timeout
from .claims import Claim, Usage
from .effects import perform_effect
from .errors import Cancelled
from .reconnect import with_db_retry


class StepContext:
    def __init__(self, claim: Claim, lost: threading.Event | None = None):
        self._claim = claim
        self._lost = lost or threading.Event()
        self.usage_total = Usage()
        state = claim.state
        self.run_id = claim.attempt.run_id
        self.state_name = claim.attempt.state_name
        self.attempt_number = claim.attempt.attempt
        self.input: Any = claim.attempt.input
        self.args: dict[str, Any] = dict(state.args)
        self.context: dict[str, Any] = claim.run.context
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"ratchet.handler.{state.handler}"),
            {"run": str(self.run_id), "state": self.state_name},
        )

    def effect(
        self,
        key: str,
        fn: Callable[[str], Any],
        compensate: Callable[..., Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> Any:
        """Do a side effect at most once for this run: ``fn`` gets the effect's idempotency key.

        A confirmed effect is not run again; its stored result is returned. Pass
        ``idempotent=True`` when ``fn`` hands that key downstream (so a retry after a crash is
        safe); otherwise a crash inside ``fn`` pauses the run for an operator.
        ``compensate(result, idempotency_key)`` undoes the effect if the run later fails.
        """
        self.check_cancelled()
        return perform_effect(self._claim, key, fn, compensate=compensate, idempotent=idempotent)

    def heartbeat(self, progress: Any = None) -> None:
        """Say the step is alive (and how far it got); raises Cancelled if it is no longer ours."""
        self.check_cancelled()
        now = timezone.now()
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
