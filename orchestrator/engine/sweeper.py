"""The recovery sweeper: workers run it on a schedule; running it twice at once is harmless.

It dispatches timers and backoffs that came due, resumes attempts whose worker died (lease
expired), times out attempts whose worker did not stop them, dispatches again what was
scheduled but whose job is gone (Redis flushed), and fails runs past their deadline. Every
action goes through the same compare-and-set transitions as normal execution.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from ..conf import ratchet_setting
from ..models import AttemptStatus, FailureMode, Run, RunStatus, StepAttempt
from .dispatch import take_sweep_turn, waiting_jobs
from .errors import engine_error
from .eventlog import EventLog
from .runstate import fail_run, save_run
from .transitions import lock_run, recover_lost, redispatch, time_out_attempt

logger = logging.getLogger("ratchet.sweeper")
BATCH = 200
TIMEOUT_GRACE_SECONDS = 2


@dataclass
class SweepReport:
    timers: int = 0
    resumed: int = 0
    timed_out: int = 0
    redispatched: int = 0
    runs_timed_out: int = 0

    def __bool__(self) -> bool:
        return any((self.resumed, self.timed_out, self.redispatched, self.runs_timed_out))


def due_timers() -> int:
    """Dispatch every scheduled attempt whose ``not_before`` has come (timers, backoffs)."""
    now = timezone.now()
    due = StepAttempt.objects.filter(status=AttemptStatus.SCHEDULED, dispatched_at__isnull=True, not_before__lte=now)
    return sum(redispatch(pk, None, reason="due") for pk in due.values_list("pk", flat=True)[:BATCH * 5])


def next_timer() -> datetime | None:
    return StepAttempt.objects.filter(status=AttemptStatus.SCHEDULED, dispatched_at__isnull=True).aggregate(
        at=Min("not_before")
    )["at"]


def sweep() -> SweepReport:
    now = timezone.now()
    report = SweepReport(timers=due_timers())
    expired = StepAttempt.objects.filter(status=AttemptStatus.RUNNING, lease_expires_at__lt=now)
    for attempt_id in expired.values_list("pk", flat=True)[:BATCH]:
        report.resumed += recover_lost(attempt_id, now)
    overdue = StepAttempt.objects.filter(
        status=AttemptStatus.RUNNING, timeout_at__lt=now - timedelta(seconds=TIMEOUT_GRACE_SECONDS)
    )
    for attempt_id in overdue.values_list("pk", flat=True)[:BATCH]:
        report.timed_out += time_out_attempt(attempt_id, now)
    grace = timedelta(seconds=ratchet_setting("REDISPATCH_GRACE_SECONDS"))
    stale = StepAttempt.objects.filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now + grace),
        status=AttemptStatus.SCHEDULED,
        dispatched_at__lt=now - grace,
    ).order_by("dispatched_at")
    candidates = dict(stale.values_list("pk", "dispatched_at")[: BATCH * 5])
    waiting = waiting_jobs(list(candidates))
    for attempt_id, dispatched_at in candidates.items():
        if attempt_id not in waiting:
            report.redispatched += redispatch(attempt_id, dispatched_at)
    late = Run.objects.filter(status=RunStatus.RUNNING, deadline_at__lt=now)
    for run_id in late.values_list("pk", flat=True)[:BATCH]:
        report.runs_timed_out += fail_past_deadline(run_id, now)
    return report


def fail_past_deadline(run_id: object, now: object) -> bool:
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.RUNNING or run.deadline_at is None or run.deadline_at >= now:
            return False
        log = EventLog(run)
        fail_run(run, log, engine_error("Timeout", "the run ran past its deadline"), FailureMode.TIMEOUT)
        save_run(run)
        log.flush()
    return True


class SweeperThread(threading.Thread):
    """Runs :func:`sweep` every few seconds inside a worker process, and wakes up early
    when a timer comes due, so waits and backoffs fire on time."""

    def __init__(self, interval: float | None = None):
        super().__init__(name=f"ratchet-sweeper-{os.getpid()}", daemon=True)
        self.interval = interval or ratchet_setting("SWEEP_INTERVAL_SECONDS")
        self.stopping = threading.Event()

    def run(self) -> None:
        last_sweep = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    close_old_connections()
                    if time.monotonic() - last_sweep >= self.interval:
                        last_sweep = time.monotonic()
                        if take_sweep_turn(self.name, self.interval * 0.75):
                            report = sweep()
                            if report:
                                logger.info("sweep: %s", report)
                        else:
                            due_timers()
                    else:
                        due_timers()
                    pause = self._pause_until_next(last_sweep)
                except Exception:
                    logger.exception("sweep failed; trying again next round")
                    connection.close()
                    pause = self.interval
                self.stopping.wait(pause)
        finally:
            connection.close()

    def _pause_until_next(self, last_sweep: float) -> float:
        until_sweep = self.interval * random.uniform(0.75, 1.25) - (time.monotonic() - last_sweep)
        timer = next_timer()
        if timer is not None:
            until_timer = (timer - timezone.now()).total_seconds()
            return max(min(until_sweep, until_timer), 0.01)
        return max(until_sweep, 0.01)

    def stop(self) -> None:
        self.stopping.set()
