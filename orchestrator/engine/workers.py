"""Worker presence in the database: which workers are alive and which queues they read.

Redis keeps RQ's own worker registry, but a flush loses it and never brings it back; the
database's record survives, and the sweeper uses it to report work on unserved queues.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..conf import ratchet_setting
from ..models import WorkerBeat
from . import clock


def beat(name: str, queues: list[str]) -> None:
    """Record that the worker ``name`` is alive and reads ``queues`` (one UPDATE, an INSERT the first time)."""
    now = clock.now()
    if not WorkerBeat.objects.filter(name=name).update(queues=queues, last_seen_at=now):
        WorkerBeat.objects.update_or_create(name=name, defaults={"queues": queues, "last_seen_at": now,
                                                                 "started_at": now})


def gone(name: str) -> None:
    """The worker stopped cleanly: it no longer serves anything."""
    WorkerBeat.objects.filter(name=name).delete()


def forget_silent(now: datetime, hours: float = 24) -> int:
    """Drop the rows of workers not heard from for ``hours`` (killed ones never say goodbye)."""
    return WorkerBeat.objects.filter(last_seen_at__lt=now - timedelta(hours=hours)).delete()[0]


def alive(now: datetime | None = None) -> list[WorkerBeat]:
    since = (now or clock.now()) - timedelta(seconds=ratchet_setting("WORKER_SILENT_SECONDS"))
    return list(WorkerBeat.objects.filter(last_seen_at__gte=since))


def live_queues(now: datetime | None = None) -> set[str]:
    """Every queue at least one live worker reads."""
    return {queue for worker in alive(now) for queue in worker.queues}
