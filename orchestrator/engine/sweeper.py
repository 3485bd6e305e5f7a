"""The recovery sweeper: workers run it on a schedule; running it twice at once is harmless.

It dispatches timers and backoffs that came due, resumes attempts whose worker died (lease
expired), times out attempts whose worker did not stop them, dispatches again what was
scheduled but whose job is in no queue (Redis flushed, or a worker died holding the job it
popped: the database decides, not the job's status), reports scheduled work on a queue no
live worker reads, settles parents whose child run ended while nobody was there to tell them,
applies approval timeouts and escalations, and fails runs past their deadline whatever their
status. Every action
goes through the same compare-and-set transitions as normal execution. "Now" is the
database's clock (``clock``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, connection, transaction
from django.db.models import Min, Q

from ..conf import ratchet_setting
from ..models import AttemptStatus, Event, EventKind, FailureMode, Fork, ForkStatus, Run, StepAttempt
from ..models.runs import ACTIVE_RUN_STATUSES
from . import clock
from .approval_timers import due_approvals
from .children import settle_child, unsettled_children
from .definition import definition_for_version
from .dispatch import jobs_in_queues, take_sweep_turn
from .errors import engine_error
from .eventlog import EventLog
from .runstate import end_saga_past_deadline, fail_run, is_failing, save_run
from .scheduling import fail_fork
from .signals import swept
from .transitions import lock_run, recover_lost, redispatch, time_out_attempt
from .workers import forget_silent, live_queues

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
    unserved: int = 0
    joins_timed_out: int = 0
    children_settled: int = 0
    approvals_due: int = 0

    def __bool__(self) -> bool:
        return any((self.resumed, self.timed_out, self.redispatched, self.runs_timed_out, self.unserved,
                    self.joins_timed_out, self.children_settled, self.approvals_due))


def due_timers() -> int:
    """Dispatch every scheduled attempt whose ``not_before`` has come (timers, backoffs)."""
    now = clock.now()
    due = StepAttempt.objects.filter(status=AttemptStatus.SCHEDULED, dispatched_at__isnull=True, not_before__lte=now)
    return sum(redispatch(pk, None, reason="due") for pk in due.values_list("pk", flat=True)[:BATCH * 5])


def next_timer() -> datetime | None:
    return StepAttempt.objects.filter(status=AttemptStatus.SCHEDULED, dispatched_at__isnull=True).aggregate(
        at=Min("not_before")
    )["at"]


def sweep() -> SweepReport:
    now = clock.now()
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
    candidates = {pk: (queue, at) for pk, queue, at in stale.values_list("pk", "queue", "dispatched_at")[:BATCH * 5]}
    queued = jobs_in_queues({pk: queue for pk, (queue, _) in candidates.items()})
    for attempt_id, (_, dispatched_at) in candidates.items():
        if attempt_id not in queued:
            report.redispatched += redispatch(attempt_id, dispatched_at)
    report.unserved = report_unserved({pk: queue for pk, (queue, _) in candidates.items()}, now)
    stalled = Fork.objects.filter(status=ForkStatus.OPEN, deadline_at__lt=now)
    for fork_id in stalled.values_list("pk", flat=True)[:BATCH]:
        report.joins_timed_out += time_out_join(fork_id, now)
    for child_id in unsettled_children(BATCH):
        report.children_settled += settle_child(child_id)
    report.approvals_due = due_approvals(now)
    late = Run.objects.filter(status__in=ACTIVE_RUN_STATUSES, deadline_at__lt=now)
    for run_id in late.values_list("pk", flat=True)[:BATCH]:
        report.runs_timed_out += fail_past_deadline(run_id, now)
    forget_silent(now)
    for receiver, failure in swept.send_robust(sender="ratchet", now=now):
        if isinstance(failure, Exception):
            logger.error("after-sweep work of %s failed", receiver, exc_info=failure)
    return report


def report_unserved(attempts: dict[int, str], now: datetime) -> int:
    """Scheduled work waiting on a queue that no live worker reads: an event on the attempt
    (once) and a warning in the log, so the dashboards can show it. Returns how many."""
    if not attempts:
        return 0
    served = live_queues(now)
    unserved = {pk: queue for pk, queue in attempts.items() if queue not in served}
    if not unserved:
        return 0
    reported = set(Event.objects.filter(attempt_id__in=list(unserved), kind=EventKind.QUEUE_UNSERVED)
                   .values_list("attempt_id", flat=True))
    for attempt in StepAttempt.objects.filter(pk__in=[pk for pk in unserved if pk not in reported]):
        logger.warning("attempt %s (%s) waits on queue %r, which no live worker reads",
                       attempt.pk, attempt.state_name, attempt.queue)
        with transaction.atomic():
            log = EventLog(attempt.run_id)
            log.add(EventKind.QUEUE_UNSERVED, attempt, queue=attempt.queue, live_queues=sorted(served))
            log.flush()
    return len(unserved) - len(reported)


def time_out_join(fork_id: int, now: datetime) -> bool:
    """Branches that did not join in time: the parallel state fails as a coordination deadlock."""
    run_id = Fork.objects.filter(pk=fork_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        run = lock_run(run_id)
        fork = Fork.objects.select_related("line__fork").get(pk=fork_id)
        if fork.status != ForkStatus.OPEN or fork.deadline_at is None or fork.deadline_at >= now:
            return False
        log = EventLog(run)
        error = engine_error("JoinTimeout", f"only {fork.done} of the {fork.needed} branches needed had finished "
                                           f"when the join timed out")
        fail_fork(run, definition_for_version(run.version), fork, error, FailureMode.COORDINATION_DEADLOCK, log)
        save_run(run)
        log.flush()
    return True


def fail_past_deadline(run_id: object, now: datetime) -> bool:
    """A run past its deadline, whatever it waits on (a step, a person, an operator): it fails
    as a timeout and compensates; a saga past its own deadline ends, marking what is left."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status not in ACTIVE_RUN_STATUSES or run.deadline_at is None or run.deadline_at >= now:
            return False
        log = EventLog(run)
        if is_failing(run):
            end_saga_past_deadline(run, log)
        else:
            fail_run(run, log, engine_error("Timeout", f"the run ran past its deadline while {run.status}"),
                     FailureMode.TIMEOUT)
        save_run(run)
        log.flush()
    return True


class SweeperThread(threading.Thread):
    """Runs :func:`sweep` every few seconds inside a worker process, and wakes up early
    when a timer comes due, so waits and backoffs fire on time."""

    def __init__(self, interval: float | None = None, beat: Callable[[], object] | None = None):
        super().__init__(name=f"ratchet-sweeper-{os.getpid()}", daemon=True)
        self.interval = interval or ratchet_setting("SWEEP_INTERVAL_SECONDS")
        self.beat = beat  # tells the database this worker is alive, at every sweep
        self.stopping = threading.Event()

    def run(self) -> None:
        last_sweep = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    close_old_connections()
                    if time.monotonic() - last_sweep >= self.interval:
                        last_sweep = time.monotonic()
                        clock.sync()
                        if self.beat is not None:
                            self.beat()
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
                clock.timers_changed.wait(pause)
                clock.timers_changed.clear()
        finally:
            connection.close()

    def _pause_until_next(self, last_sweep: float) -> float:
        until_sweep = self.interval * random.uniform(0.75, 1.25) - (time.monotonic() - last_sweep)
        timer = next_timer()
        if timer is not None:
            until_timer = (timer - clock.now()).total_seconds()
            return max(min(until_sweep, until_timer), 0.01)
        return max(until_sweep, 0.01)

    def stop(self) -> None:
        self.stopping.set()
        clock.timers_changed.set()
