"""Dispatch: hand attempts to RQ after the transaction that scheduled them commits.

Redis only dispatches; the database is the truth. A job that never arrives (Redis flushed,
enqueue failed) is found and dispatched again by the sweeper, and a job delivered twice
finds its attempt already claimed.
"""

from __future__ import annotations

import logging
from functools import cache

from django.conf import settings
from django.db import transaction
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

logger = logging.getLogger("ratchet.dispatch")

JOB_FUNCTION = "orchestrator.engine.executor.run_attempt"
WAITING_JOB_STATUSES = {JobStatus.QUEUED, JobStatus.DEFERRED}


def job_id(attempt_id: int) -> str:
    return f"ratchet-attempt-{attempt_id}"


@cache
def _connection(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def redis_connection() -> Redis:
    return _connection(settings.REDIS_URL)


def queue(name: str) -> Queue:
    return Queue(name, connection=redis_connection())


def enqueue_attempt(attempt_id: int, queue_name: str) -> None:
    """Put one due attempt's job on its queue.

    Timers and backoffs never wait in RQ's scheduler: the database holds them (``not_before``)
    and the sweeper dispatches them when due, so no single scheduler process can strand them.
    """
    queue(queue_name).enqueue(
        JOB_FUNCTION, attempt_id, job_id=job_id(attempt_id), job_timeout=-1, result_ttl=0, failure_ttl=24 * 3600
    )


def _enqueue_quietly(attempt_id: int, queue_name: str) -> None:
    try:
        enqueue_attempt(attempt_id, queue_name)
    except Exception:
        # Durable already: the sweeper dispatches it again once Redis answers.
        logger.warning("enqueue of attempt %s failed; the sweeper will retry", attempt_id, exc_info=True)


def dispatch_on_commit(attempt_id: int, queue_name: str) -> None:
    """Enqueue after the current transaction commits (never inside it)."""
    transaction.on_commit(lambda: _enqueue_quietly(attempt_id, queue_name))


def job_is_waiting(attempt_id: int) -> bool:
    """True when RQ still holds a job for this attempt that a worker will pick up."""
    try:
        status = Job.fetch(job_id(attempt_id), connection=redis_connection()).get_status(refresh=False)
    except Exception:
        return False
    return status in WAITING_JOB_STATUSES
