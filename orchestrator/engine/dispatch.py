"""Dispatch: hand attempts to RQ after the transaction that scheduled them commits.

Redis only dispatches; the database is the truth. A job that never arrives (Redis flushed,
enqueue failed) is found and dispatched again by the sweeper, and a job delivered twice
finds its attempt already claimed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from redis import Redis, RedisError
from rq import Queue
from rq.job import Job

from . import jobs
from .jobs import job_id

logger = logging.getLogger("ratchet.dispatch")

SWEEP_KEY = "ratchet:sweep-turn"


@cache
def _connection(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def redis_connection() -> Redis:
    return _connection(settings.REDIS_URL)


def queue(name: str) -> Queue:
    return Queue(name, connection=redis_connection())


FIRST_JOBS = 8  # of a fan-out's, sent before the rest are built, so idle workers start at once


def enqueue_attempts(attempts: list[tuple[int, str]]) -> None:
    """Put due attempts' jobs on their queues in one Redis round trip (two for a fan-out: its
    first jobs, then the rest, whose building would otherwise keep the first ones back).

    Timers and backoffs never wait in RQ's scheduler: the database holds them (``not_before``)
    and the sweeper dispatches them when due, so no single scheduler process can strand them.
    """
    if len(attempts) > FIRST_JOBS * 2:
        _enqueue_in_one_trip(attempts[:FIRST_JOBS])
        attempts = attempts[FIRST_JOBS:]
    _enqueue_in_one_trip(attempts)


def _enqueue_in_one_trip(attempts: list[tuple[int, str]]) -> None:
    pipe = redis_connection().pipeline()
    add_jobs(pipe, attempts)
    pipe.execute()


def add_jobs(pipe: Any, attempts: list[tuple[int, str]]) -> None:
    """Queue the attempts' jobs on a pipeline (sent when it is), one push per queue."""
    by_queue: dict[str, list[int]] = {}
    for attempt_id, queue_name in attempts:
        by_queue.setdefault(queue_name, []).append(attempt_id)
    for queue_name, ids in by_queue.items():
        jobs.add_jobs(pipe, queue(queue_name), ids)


_held = threading.local()

# The jobs of steps a worker took without them (a branch's end taking the next branch) stay
# queued until this many wait to be taken off, or a round trip goes anyway, or the worker's job
# ends: one round trip for them all, not one per step. A job popped meanwhile finds its attempt
# claimed and does nothing.
WITHDRAW_BATCH = 16


@contextmanager
def held_dispatches() -> Iterator[list[tuple[int, str]]]:
    """While inside, the jobs of attempts due are kept in the list yielded instead of sent, and
    so are the jobs to take off their queues (``withdraw_job``): a worker sends both with its
    own bookkeeping after its job, in the same round trip (``add_held``). ``send_held`` sends
    the dispatches at once (the worker goes on with another step first)."""
    held: list[tuple[int, str]] = []
    _held.attempts, _held.withdrawals = held, []
    try:
        yield held
    finally:
        _held.attempts = _held.withdrawals = None


def add_held(pipe: Any) -> list[tuple[int, str]]:
    """Put everything held on a pipeline (sent when it is); the dispatches, for a log."""
    attempts, withdrawals = _take("attempts"), _take("withdrawals")
    add_jobs(pipe, attempts)
    for attempt_id, queue_name in withdrawals:
        _add_withdrawal(pipe, attempt_id, queue_name)
    return attempts


def send_held(everything: bool = False) -> None:
    """Send the held dispatches now; the held withdrawals go with them, or once enough wait,
    or when ``everything`` is asked for."""
    attempts, withdrawals = getattr(_held, "attempts", None), getattr(_held, "withdrawals", None)
    if not attempts and not (withdrawals and (everything or len(withdrawals) >= WITHDRAW_BATCH)):
        return
    try:
        pipe = redis_connection().pipeline()
        add_held(pipe)
        pipe.execute()
    except Exception:
        # Durable already: the sweeper dispatches them again once Redis answers, and a job left
        # queued only finds its attempt claimed.
        logger.warning("sending held jobs failed; the sweeper will dispatch them again", exc_info=True)


def _take(name: str) -> list[tuple[int, str]]:
    held = getattr(_held, name, None) or []
    taken = list(held)
    held.clear()
    return taken


def _enqueue_quietly(attempts: list[tuple[int, str]]) -> None:
    held = getattr(_held, "attempts", None)
    if held is not None:
        held.extend(attempts)
    else:
        _send_quietly(attempts)


def _send_quietly(attempts: list[tuple[int, str]]) -> None:
    try:
        enqueue_attempts(attempts)  # one round trip, even for one (``enqueue`` takes two)
    except Exception:
        # Durable already: the sweeper dispatches them again once Redis answers.
        logger.warning("enqueue of attempts %s failed; the sweeper will retry", [a for a, _ in attempts],
                       exc_info=True)


def dispatch_on_commit(attempt_id: int, queue_name: str) -> None:
    """Enqueue after the current transaction commits (never inside it)."""
    transaction.on_commit(lambda: _enqueue_quietly([(attempt_id, queue_name)]))


def dispatch_many_on_commit(attempts: list[tuple[int, str]]) -> None:
    """Enqueue these attempts together, in one pipeline, after the current transaction commits."""
    if attempts:
        transaction.on_commit(lambda: _enqueue_quietly(list(attempts)))


def withdraw_job(attempt_id: int, queue_name: str) -> None:
    """Take an attempt's job off its queue (a worker took the attempt without it), or hold that
    for the worker's next round trip (``held_dispatches``). Best effort: a job already taken,
    or left behind, only finds its attempt claimed."""
    withdrawals = getattr(_held, "withdrawals", None)
    if withdrawals is not None:
        withdrawals.append((attempt_id, queue_name))
        return
    try:
        pipe = redis_connection().pipeline(transaction=False)
        _add_withdrawal(pipe, attempt_id, queue_name)
        pipe.execute()
    except RedisError:
        logger.warning("could not withdraw the job of attempt %s", attempt_id, exc_info=True)


def _add_withdrawal(pipe: Any, attempt_id: int, queue_name: str) -> None:
    pipe.lrem(queue(queue_name).key, -1, job_id(attempt_id))  # from the tail: see fast_branch._end_sql
    pipe.delete(f"{Job.redis_job_namespace_prefix}{job_id(attempt_id)}")


def jobs_in_queues(attempts: dict[int, str]) -> set[int]:
    """The attempts among these (id -> queue) whose job really sits in its queue's list.

    Not the job hash's status: a worker killed between popping a job and starting it takes
    the job with it while the hash still says "queued". One LPOS per attempt, one round trip.
    When Redis cannot answer, every job counts as queued: dispatching into a Redis that is
    down would only fail again, and the next sweep asks anew.
    """
    if not attempts:
        return set()
    ids = list(attempts)
    try:
        pipe = redis_connection().pipeline(transaction=False)
        for attempt_id in ids:
            pipe.lpos(queue(attempts[attempt_id]).key, job_id(attempt_id))
        positions = pipe.execute()
    except RedisError:
        logger.warning("Redis did not answer; not redispatching this round", exc_info=True)
        return set(ids)
    return {a for a, position in zip(ids, positions, strict=True) if position is not None}


def take_sweep_turn(holder: str, seconds: float) -> bool:
    """One worker sweeps per interval: whoever sets the key first. Without Redis, everyone does
    (sweeping twice is harmless, only wasteful)."""
    try:
        return bool(redis_connection().set(SWEEP_KEY, holder, nx=True, px=max(int(seconds * 1000), 1)))
    except RedisError:
        return True
