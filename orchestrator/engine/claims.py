"""What a worker holds while it executes an attempt, and who may claim the next one inline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from ..models import Run, StepAttempt
from .definition import Definition, State


@dataclass
class Claim:
    attempt: StepAttempt
    run: Run
    definition: Definition
    token: uuid.UUID
    worker: str
    # The run row's version as this worker last saw it (PostgreSQL), for fast_checkpoint.py.
    run_xmin: str | None = None

    @property
    def state(self) -> State:
        return self.definition.state(self.attempt.state_name)


@dataclass(frozen=True)
class Claimant:
    """A worker that may run the next step itself, without a trip through RQ.

    Only for a step on the queue the worker already serves, with no delay, and only
    ``chain_left`` more times, so one long run cannot monopolise a worker.
    """

    worker: str
    queue: str
    chain_left: int

    def may_take(self, queue: str) -> bool:
        return self.chain_left > 0 and queue == self.queue


@dataclass
class Usage:
    tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(self, tokens: int = 0, cost: float | Decimal = 0) -> None:
        if tokens < 0 or cost < 0:
            raise ValueError("usage cannot be negative")
        self.tokens += int(tokens)
        self.cost += Decimal(str(cost))
