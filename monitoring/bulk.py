"""Bulk actions: cancel or redrive every run a filter of the runs list matched, in the background.

A person confirms a count; a ``BulkOperation`` row keeps the filter, the moment of confirmation
and the progress. An RQ job works through the matching runs in chunks ordered by run id, each
chunk one transaction that acts on its runs (each through the same engine function as the run's
own button, with the person as the actor of its events) and moves the cursor and the counts. A
run that no longer qualifies (finished, or already redriven) is skipped with its reason.

The database holds the truth: a job lost with its worker, or with Redis, leaves the operation
without heartbeat, and the sweeper (``resume_stalled``, on the engine's ``swept`` signal) puts it
on a queue again. Two jobs of one operation serialize on its row lock, and the cursor only moves
forward, so no run is acted on twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, QuerySet
from django.http import QueryDict
from django.utils import timezone

from orchestrator.conf import ratchet_setting
from orchestrator.engine.dispatch import queue
from orchestrator.engine.errors import InvalidTransition
from orchestrator.engine.runs import cancel_run, redrive_run
from orchestrator.engine.runstate import CANCELLABLE
from orchestrator.models import Run, RunStatus

from .models import BulkAction, BulkOperation, BulkStatus, BulkTarget
from .runlist import RunFilter

logger = logging.getLogger("ratchet.bulk")

QUEUE = "default"
JOB_FUNCTION = "monitoring.bulk.run_operation"
MAX_PROBLEMS = 100
# Which runs an action can apply to at all; the others a filter matches are not counted.
ELIGIBLE = {BulkAction.CANCEL: CANCELLABLE, BulkAction.REDRIVE: (RunStatus.FAILED,)}
DONE_WORD = {BulkAction.CANCEL: "cancelled", BulkAction.REDRIVE: "redriven"}
PERMISSIONS = {BulkAction.CANCEL: "orchestrator.change_run", BulkAction.REDRIVE: "orchestrator.change_run"}


class BulkRefused(ValueError):
    """The request cannot become a bulk operation; the message says what to change."""


def targets(filters: RunFilter, action: str, as_of: datetime) -> QuerySet[Run]:
    """The runs ``action`` would apply to: matched by ``filters`` as of ``as_of``, started by
    then, and in a status the action applies to."""
    runs = filters.apply(Run.objects.filter(created_at__lte=as_of), now=as_of)
    return runs.filter(status__in=ELIGIBLE[BulkAction(action)])


def check_request(filters: RunFilter, action: str) -> None:
    if action not in BulkAction.values:
        raise BulkRefused(f"unknown bulk action {action!r}; use one of {', '.join(BulkAction.values)}")
    if filters.errors:
        raise BulkRefused("fix the filter first: " + "; ".join(f"{k}: {v}" for k, v in filters.errors.items()))
    if filters.is_empty:
        raise BulkRefused("choose at least one filter: a bulk action never applies to every run at once")


def request_operation(filters: RunFilter, action: str, user: Any, expected: int, as_of: datetime,
                      reason: str = "") -> BulkOperation:
    """Record a confirmed bulk action and hand it to a worker.

    ``expected`` is the count the person confirmed; if the runs it would apply to changed since
    (more of them now), the request is refused so nobody acts on a number they did not see.
    """
    check_request(filters, action)
    total = targets(filters, action, as_of).count()
    if total == 0:
        raise BulkRefused(f"no run matching this filter can be {DONE_WORD[action]} now")
    if total > expected:
        raise BulkRefused(f"{total} runs match now, not the {expected} you confirmed; check the count again")
    operation = BulkOperation.objects.create(
        action=action, query=_query(filters), as_of=as_of,
        reason=reason[:500], requested_by=user, total=total, heartbeat_at=timezone.now(),
    )
    transaction.on_commit(lambda: enqueue(operation.pk))
    return operation


def _query(filters: RunFilter) -> str:
    query = QueryDict(mutable=True)
    query.update(filters.as_query())
    return query.urlencode()


def enqueue(operation_id: int) -> None:
    """Put the operation's job on the queue; if Redis does not answer, the sweeper will."""
    try:
        queue(QUEUE).enqueue(JOB_FUNCTION, operation_id, job_id=f"ratchet-bulk-{operation_id}", job_timeout=-1,
                             result_ttl=0, failure_ttl=24 * 3600)
    except Exception:
        logger.warning("enqueue of bulk operation %s failed; the sweeper will retry", operation_id, exc_info=True)


def run_operation(operation_id: int) -> None:
    """The RQ job: chunks until the operation is done or stopped."""
    while process_chunk(operation_id):
        pass


def process_chunk(operation_id: int, size: int | None = None) -> bool:
    """Act on the next ``size`` runs in one transaction; True while more remain.

    A second job of the operation (queued again by the sweeper while the first still works)
    finds the row locked and leaves: one job works at a time, the other never waits on it.
    """
    size = size or ratchet_setting("BULK_CHUNK_SIZE")
    with transaction.atomic():
        skip = connection.features.has_select_for_update_skip_locked
        operation = BulkOperation.objects.select_for_update(skip_locked=skip).filter(pk=operation_id).first()
        if operation is None or operation.is_finished:
            return False
        now = timezone.now()
        operation.heartbeat_at = now
        if operation.stop_requested:
            _finish(operation, BulkStatus.STOPPED, now)
            operation.save()
            return False
        operation.status = BulkStatus.RUNNING
        runs = targets(RunFilter.from_query(QueryDict(operation.query)), operation.action, operation.as_of)
        if operation.cursor:
            runs = runs.filter(pk__gt=uuid.UUID(operation.cursor))
        chunk = list(runs.order_by("pk").values_list("pk", flat=True)[:size])
        act = _action(operation)
        done = [run_id for run_id in chunk if _act_on(operation, run_id, act)]
        BulkTarget.objects.bulk_create([BulkTarget(operation=operation, run_id=run_id) for run_id in done])
        if chunk:
            operation.cursor = str(chunk[-1])
        if len(chunk) < size:
            _finish(operation, BulkStatus.DONE, now)
        operation.save()
        return len(chunk) == size


def _action(operation: BulkOperation) -> Callable[[Any], object]:
    who = operation.requested_by.get_username() if operation.requested_by else "a deleted user"
    reason = f"bulk {operation.action} #{operation.pk} by {who}" + (f": {operation.reason}" if operation.reason else "")
    if operation.action == BulkAction.CANCEL:
        return lambda run_id: cancel_run(run_id, user=operation.requested_by, reason=reason)
    return lambda run_id: redrive_run(run_id, user=operation.requested_by, reason=reason)


def _act_on(operation: BulkOperation, run_id: Any, act: Callable[[Any], object]) -> bool:
    """Act on one run in a savepoint; count and note the outcome. True when it was acted on."""
    try:
        with transaction.atomic():
            act(run_id)
    except InvalidTransition as refused:
        operation.skipped += 1
        _note(operation, run_id, f"skipped: {refused}")
    except Exception as exc:
        logger.exception("bulk %s #%s failed on run %s", operation.action, operation.pk, run_id)
        operation.failed += 1
        _note(operation, run_id, f"failed: {type(exc).__name__}: {exc}")
    else:
        operation.succeeded += 1
        return True
    return False


def _note(operation: BulkOperation, run_id: Any, message: str) -> None:
    if len(operation.problems) < MAX_PROBLEMS:
        operation.problems = [*operation.problems, {"run": str(run_id), "message": message[:300]}]


def _finish(operation: BulkOperation, status: str, now: datetime) -> None:
    operation.status = status
    operation.finished_at = now


def aftermath(operation: BulkOperation) -> dict[str, int]:
    """How the runs the operation acted on stand now, by status (one grouped query): for a
    redrive, how many still run, succeeded, or failed again."""
    rows = (BulkTarget.objects.filter(operation=operation).values("run__status")
            .annotate(n=Count("id")).order_by("run__status"))
    return {row["run__status"]: row["n"] for row in rows}


def request_stop(operation_id: int) -> BulkOperation:
    """Ask the operation to stop after its current chunk (what was done stays done)."""
    with transaction.atomic():
        operation = BulkOperation.objects.select_for_update().get(pk=operation_id)
        if not operation.is_finished:
            operation.stop_requested = True
            operation.save(update_fields=["stop_requested"])
    return operation


def resume_stalled(now: datetime | None = None, **_: Any) -> int:
    """Queue again the unfinished operations that made no progress for a while (their job was
    lost with a worker or with Redis). Connected to the engine's ``swept`` signal."""
    now = now or timezone.now()
    stalled_since = now - timedelta(seconds=ratchet_setting("BULK_STALL_SECONDS"))
    stalled = list(BulkOperation.objects.filter(status__in=(BulkStatus.QUEUED, BulkStatus.RUNNING),
                                                heartbeat_at__lt=stalled_since).values_list("pk", flat=True)[:20])
    for operation_id in stalled:
        BulkOperation.objects.filter(pk=operation_id).update(heartbeat_at=now)
        logger.warning("bulk operation %s made no progress since %s; queued again", operation_id, stalled_since)
        enqueue(operation_id)
    return len(stalled)
