"""Collects a transition's events and writes them in one INSERT, inside its transaction."""

from __future__ import annotations

from typing import Any

from django.db import connection

from ..models import Event, Run, StepAttempt
from . import clock
from .rows import bulk_insert
from .signals import send_on_commit


class EventLog:
    def __init__(self, run: Run | Any, actor: Any = None):
        self.run_id = run.pk if isinstance(run, Run) else run
        self.actor = actor
        self.pending: list[Event] = []

    def add(
        self,
        kind: str,
        attempt: StepAttempt | None = None,
        state_name: str = "",
        actor: Any = None,
        **data: Any,
    ) -> None:
        self.pending.append(
            Event(
                run_id=self.run_id,
                attempt=attempt,
                kind=kind,
                state_name=state_name or (attempt.state_name if attempt else ""),
                data=data,
                actor=actor or self.actor,
                created_at=clock.now(),
            )
        )

    def flush(self) -> None:
        assert connection.in_atomic_block, "events are written inside the transition's transaction"
        if self.pending:
            bulk_insert(self.pending)
            send_on_commit(self.run_id, self.pending)
            self.pending = []
