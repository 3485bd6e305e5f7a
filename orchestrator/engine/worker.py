"""The RQ worker Ratchet runs: RQ's SimpleWorker plus the recovery sweeper on a schedule."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from rq.worker import SimpleWorker, Worker

from . import workers
from .executor import WARM_SHUTDOWN
from .sweeper import SweeperThread

logger = logging.getLogger("ratchet.worker")


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


class RatchetWorker(SweepingMixin, SimpleWorker):
    """Runs jobs in the worker process: no fork per job (the fork costs ~15 ms a job)."""


class RatchetForkingWorker(SweepingMixin, Worker):
    """Forks a work horse per job: isolates handlers that leak or crash the interpreter."""
