"""The RQ worker Ratchet runs: RQ's SimpleWorker plus the recovery sweeper on a schedule, and
Ratchet's own jobs run with the bookkeeping they need rather than all of RQ's."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import Any

from django.db import DatabaseError
from redis import RedisError
from rq.job import Job
from rq.queue import Queue
from rq.utils import now
from rq.worker import SimpleWorker, Worker, WorkerStatus

from ..conf import ratchet_setting
from . import workers
from .dispatch import add_held, held_dispatches, send_held
from .executor import WARM_SHUTDOWN, run_attempt
from .jobs import JOB_FUNCTION
from .sweeper import SweeperThread

logger = logging.getLogger("ratchet.worker")
LOOP_CHECKS_EVERY_SECONDS = 1.0  # the heartbeat and the check for `rq suspend`, sent before every job by RQ


class SweepingMixin:
    """Starts the sweeper thread beside the work loop, so no separate daemon is needed, and
    tells the executor about a warm shutdown so it stops running a run's steps inline."""

    def request_stop(self, signum: int, frame: Any) -> None:
        WARM_SHUTDOWN.set()
        super().request_stop(signum, frame)  # type: ignore[misc]

    def work(self, *args: Any, **kwargs: Any) -> bool:
        name, queues = self.name, self.queue_names()  # type: ignore[attr-defined]
        sweeper = SweeperThread(beat=lambda: workers.beat(name, queues))
        sweeper.start()
        try:
            return super().work(*args, **kwargs)  # type: ignore[misc]
        finally:
            sweeper.stop()
            sweeper.join(timeout=5)
            try:
                workers.gone(name)
            except DatabaseError:  # the database may be what stopped us; the record then just ages out
                logger.warning("could not remove worker %s from the database", name, exc_info=True)


class LeanAttemptJobs(SimpleWorker):
    """Runs an attempt's job (``run_attempt``) with two Redis round trips of bookkeeping around
    it instead of RQ's two dozen.

    RQ records every job's execution for its own recovery and dashboards: an execution record,
    the started registry, the job's status and heartbeats, its result, its dependents. None of
    it carries anything for these jobs: the database holds the attempt, its claim and its lease,
    the sweeper recovers what a dead worker held, and the job's result is discarded
    (``result_ttl=0``). What is kept: the worker shows busy with the job as its current one, the
    job leaves the intermediate queue once taken, its hash is deleted when done, the worker's
    job counts and working time go up, and a job that raises is handled by RQ as any failure
    (failed registry, exception handlers). The jobs the job's last step dispatched (the run's
    next step on another queue, say) go in the round trip after it. Other jobs, and every job
    with ``LEAN_JOBS`` off, take RQ's own path.
    """

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.func_name != JOB_FUNCTION or not ratchet_setting("LEAN_JOBS"):
            super().execute_job(job, queue)
            return
        job.started_at = now()
        with self.connection.pipeline(transaction=False) as pipe:
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)  # a warm shutdown now waits for the job
            self.set_current_job_id(job.id, pipeline=pipe)
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.execute()
        with held_dispatches():
            try:
                run_attempt(*job.args, **job.kwargs)
            except Exception:
                send_held(everything=True)
                job.ended_at = now()
                exc_info = sys.exc_info()
                self.handle_exception(job, *exc_info)
                self.handle_job_failure(job=job, queue=queue, exc_string="".join(traceback.format_exception(*exc_info)))
                self.set_state(WorkerStatus.IDLE)
                return
            job.ended_at = now()
            sent: list[tuple[int, str]] = []
            try:
                with self.connection.pipeline() as pipe:
                    # The run's next step, dispatched by the last checkpoint, and the jobs of
                    # steps the job took without them, off their queues.
                    sent = add_held(pipe)
                    self.increment_successful_job_count(pipeline=pipe)
                    self.increment_total_working_time(job.ended_at - job.started_at, pipe)
                    self.set_current_job_id(None, pipeline=pipe)
                    self.set_state(WorkerStatus.IDLE, pipeline=pipe)
                    pipe.delete(job.key)
                    pipe.execute()
            except RedisError:
                # The attempts are durable already: the sweeper dispatches them again once Redis answers.
                logger.warning("could not enqueue attempts %s after job %s", [a for a, _ in sent], job.id,
                               exc_info=True)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """Written only when it changes: the work loop sets "idle" before every dequeue."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline=pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        """At most once a second (``rq suspend`` is noticed within a second, not before every job)."""
        checked = getattr(self, "_suspension_checked", None)
        if checked is not None and time.monotonic() - checked < LOOP_CHECKS_EVERY_SECONDS:
            return
        self._suspension_checked = time.monotonic()
        super().check_for_suspension(burst)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """At most once a second unless a caller asks for a new timeout: the loop sends one
        before and after every job, and the worker's key lives for minutes."""
        last = getattr(self, "last_heartbeat", None)
        if (timeout is None and pipeline is None and last is not None
                and (now() - last).total_seconds() < LOOP_CHECKS_EVERY_SECONDS):
            return
        super().heartbeat(timeout, pipeline=pipeline)


class RatchetWorker(SweepingMixin, LeanAttemptJobs):
    """Runs jobs in the worker process: no fork per job (the fork costs ~15 ms a job)."""


class RatchetForkingWorker(SweepingMixin, Worker):
    """Forks a work horse per job: isolates handlers that leak or crash the interpreter."""
