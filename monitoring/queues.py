"""What the Queues page (and ``/metrics``) read about queues and workers, in a fixed number of queries.

The database is the truth about work: an attempt ``scheduled`` and due waits for a worker, one
``scheduled`` with ``not_before`` in the future waits for its timer or backoff, ``running`` is
being done. RQ's list lengths come from Redis, only as a cross-check: Redis may be down or
flushed (the sweeper dispatches again), so every Redis figure may be ``None``.

Queries: ``queue_stats`` one, ``workers.alive`` one, ``running_now`` one, ``recent_deaths`` one;
``queues_report`` is those four whatever the number of queues, workers and attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from redis import Redis, RedisError
from rq import Queue

from orchestrator.engine import workers as worker_registry
from orchestrator.models import AttemptStatus, StepAttempt, WorkerBeat

logger = logging.getLogger("ratchet.monitoring")

# A page or a scrape must not hang on an unreachable Redis: short timeouts, its own connection.
REDIS_TIMEOUT_SECONDS = 1.0
DEATH_WINDOW = timedelta(hours=1)
RUNNING_SHOWN = 200
DEATHS_SHOWN = 100


@cache
def _redis(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)


def rq_lengths(names: Iterable[str]) -> dict[str, int] | None:
    """Jobs waiting in each RQ queue's list (one pipelined round trip); None when Redis cannot answer."""
    names = list(names)
    if not names:
        return {}
    try:
        pipe = _redis(settings.REDIS_URL).pipeline(transaction=False)
        for name in names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))
    except (RedisError, OSError):
        logger.info("Redis did not answer the queue lengths", exc_info=True)
        return None


def _due(now: datetime) -> Q:
    return Q(status=AttemptStatus.SCHEDULED) & (Q(not_before__isnull=True) | Q(not_before__lte=now))


def queue_stats(now: datetime) -> dict[str, dict[str, Any]]:
    """Per queue: scheduled attempts due now, scheduled for later, running, and since when the
    oldest due attempt has waited (one grouped query)."""
    rows = (StepAttempt.objects.filter(status__in=[AttemptStatus.SCHEDULED, AttemptStatus.RUNNING])
            .order_by().values("queue").annotate(
                due=Count("pk", filter=_due(now)),
                later=Count("pk", filter=Q(status=AttemptStatus.SCHEDULED, not_before__gt=now)),
                running=Count("pk", filter=Q(status=AttemptStatus.RUNNING)),
                waiting_since=Min(Coalesce("not_before", "scheduled_at"), filter=_due(now)),
            ))
    return {row.pop("queue"): row for row in rows}


def configured_queues() -> list[str]:
    return list(getattr(settings, "RQ_QUEUES", {}))


def running_now() -> list[StepAttempt]:
    """Attempts running now, oldest claim first (one query, whether or not any worker is alive)."""
    return list(StepAttempt.objects.filter(status=AttemptStatus.RUNNING)
                .select_related("run__workflow").order_by("claimed_at", "pk")[:RUNNING_SHOWN])


def recent_deaths(now: datetime) -> list[StepAttempt]:
    """Attempts marked lost in the last hour (their worker died or stopped renewing its lease)."""
    return list(StepAttempt.objects.filter(status=AttemptStatus.LOST, finished_at__gte=now - DEATH_WINDOW)
                .select_related("run__workflow").order_by("-finished_at", "-pk")[:DEATHS_SHOWN])


@dataclass
class QueueRow:
    name: str
    due: int = 0
    later: int = 0
    running: int = 0
    waiting_since: datetime | None = None
    rq_length: int | None = None
    readers: list[str] = field(default_factory=list)
    configured: bool = True
    wait_seconds: float | None = None  # how long the oldest due attempt has waited


@dataclass
class WorkerRow:
    beat: WorkerBeat
    running: list[StepAttempt]


@dataclass
class PoolRow:
    """Live workers that read the same queues (a bulkhead: ``run_workers --pools slow=1``)."""

    queues: tuple[str, ...]
    workers: list[str]
    busy: int

    @property
    def idle(self) -> int:
        return len(self.workers) - self.busy


@dataclass
class DeathRow:
    worker: str
    attempts: list[StepAttempt]
    alive_again: bool

    @property
    def last_at(self) -> datetime | None:
        return self.attempts[0].finished_at if self.attempts else None


@dataclass
class QueuesReport:
    now: datetime
    queues: list[QueueRow]
    workers: list[WorkerRow]
    deaths: list[DeathRow]
    redis_up: bool
    # Running attempts whose worker is not alive: the sweeper resumes them once their lease expires.
    orphaned: list[StepAttempt] = field(default_factory=list)
    deaths_window: timedelta = DEATH_WINDOW

    @property
    def unread(self) -> list[QueueRow]:
        return [q for q in self.queues if not q.readers]

    @property
    def pools(self) -> list[PoolRow]:
        """The live workers grouped by the queues they read, each with how many are busy."""
        grouped: dict[tuple[str, ...], PoolRow] = {}
        for row in self.workers:
            queues = tuple(sorted(row.beat.queues))
            pool = grouped.setdefault(queues, PoolRow(queues, [], 0))
            pool.workers.append(row.beat.name)
            pool.busy += 1 if row.running else 0
        return sorted(grouped.values(), key=lambda pool: pool.queues)


def queues_report(now: datetime) -> QueuesReport:
    """Every queue (configured, holding work, or read by a live worker), every live worker with
    what it runs, and the workers that lost attempts in the last hour: four queries and one
    Redis round trip."""
    stats = queue_stats(now)
    alive = worker_registry.alive(now)
    running = running_now()
    deaths = recent_deaths(now)

    configured = configured_queues()
    names = sorted(set(configured) | set(stats) | {q for w in alive for q in w.queues})
    lengths = rq_lengths(names)
    queues = []
    for name in names:
        row = QueueRow(name=name, configured=name in configured, **stats.get(name, {}))
        row.readers = [w.name for w in alive if name in w.queues]
        row.rq_length = None if lengths is None else lengths.get(name)
        if row.waiting_since is not None:
            row.wait_seconds = max((now - row.waiting_since).total_seconds(), 0.0)
        queues.append(row)

    by_worker: dict[str, list[StepAttempt]] = {}
    for attempt in running:
        by_worker.setdefault(attempt.worker, []).append(attempt)
    lost: dict[str, list[StepAttempt]] = {}
    for attempt in deaths:
        lost.setdefault(attempt.worker or "(unknown)", []).append(attempt)
    alive_names = {w.name for w in alive}
    return QueuesReport(
        now=now,
        queues=queues,
        workers=[WorkerRow(beat=w, running=by_worker.get(w.name, [])) for w in alive],
        deaths=[DeathRow(worker=name, attempts=items, alive_again=name in alive_names) for name, items in lost.items()],
        redis_up=lengths is not None,
        orphaned=[a for a in running if a.worker not in alive_names],
    )
