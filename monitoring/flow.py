"""Flow control as the pages show it: each shared rate limit with what waits under it now, and
the steps throttled in a window, per handler, from the ``throttled`` events (one grouped query)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, FloatField, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from orchestrator.engine.ratelimits import backlog, configured, waiting
from orchestrator.models import Event, EventKind


@dataclass(frozen=True)
class Throttling:
    handler: str
    steps: int  # throttled events: a step put back once counts once
    runs: int
    waited_seconds: float


@dataclass(frozen=True)
class LimitState:
    handler: str
    rate: float
    burst: int
    waiting: int
    backlog_seconds: float
    throttled: Throttling | None


def throttling(start: datetime, end: datetime) -> list[Throttling]:
    """Throttled steps in ``[start, end)`` per handler, most throttled first."""
    rows = (Event.objects.filter(kind=EventKind.THROTTLED, created_at__gte=start, created_at__lt=end)
            .annotate(handler=KT("data__handler")).values("handler")
            .annotate(steps=Count("id"), runs=Count("run", distinct=True),
                      waited=Sum(Cast(KT("data__wait_ms"), FloatField())))
            .order_by("-steps", "handler"))
    return [Throttling(row["handler"] or "", row["steps"], row["runs"], (row["waited"] or 0.0) / 1000)
            for row in rows]


def limit_states(start: datetime, end: datetime) -> list[LimitState]:
    """Every configured limit, what waits under it now, and how much it throttled in the window."""
    seen = {row.handler: row for row in throttling(start, end)}
    return [LimitState(name, limit.rate, limit.burst, waiting(name), backlog(name, limit), seen.get(name))
            for name, limit in sorted(configured().items())]
