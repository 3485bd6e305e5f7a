"""A bulk cancel on real workers: its job lost with Redis before any worker ran it, then its
worker SIGKILLed mid-way; the sweeper hands it on each time, and every run is cancelled once."""

from __future__ import annotations

import pytest
from django.utils import timezone

from monitoring.bulk import request_operation
from monitoring.models import BulkOperation, BulkStatus
from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind, Run, RunStatus

from ..conftest import wait_for
from ..web.test_bulk_actions import filters
from ..workflows import chain
from .real_workers import assert_quiet

pytestmark = [pytest.mark.engine, pytest.mark.integration]

FAST_BULK = {"RATCHET_BULK_STALL_SECONDS": "1", "RATCHET_BULK_CHUNK_SIZE": "10"}


def progress(operation: BulkOperation) -> BulkOperation:
    operation.refresh_from_db()
    return operation


def test_a_bulk_cancel_survives_a_redis_flush_and_a_killed_worker(workers, redis_conn, django_user_model):
    chain("napper", ("nap", {"type": "wait", "seconds": 600}), ("after", {"type": "succeed"}))
    runs = [start_run("napper", {"n": i})[0] for i in range(240)]
    person = django_user_model.objects.create_user("bulk-otto")
    operation = request_operation(filters(workflow="napper"), "cancel", person, 240, timezone.now())
    redis_conn.flushdb()  # its job is gone before any worker saw it

    pool = workers(2, extra_env=FAST_BULK)
    wait_for(lambda: progress(operation).succeeded >= 30, 30, what="the sweeper to hand the operation on")
    assert not progress(operation).is_finished, "the operation ended before the kill: more runs needed"
    for process in list(pool.processes):
        pool.kill(process)  # mid-chunk: its transaction dies with its connection
    halfway = progress(operation).succeeded
    assert 0 < halfway < 240

    workers(1, extra_env=FAST_BULK)
    wait_for(lambda: progress(operation).is_finished, 60, what="the operation to finish on the new worker")
    assert (operation.status, operation.succeeded, operation.skipped, operation.failed) == (BulkStatus.DONE, 240, 0, 0)
    assert Run.objects.filter(status=RunStatus.CANCELLED).count() == 240
    cancelled = Event.objects.filter(kind=EventKind.RUN_CANCELLED)
    assert cancelled.count() == 240 and set(cancelled.values_list("actor__username", flat=True)) == {"bulk-otto"}
    for run in runs[:: 40]:
        assert_quiet(Run.objects.get(pk=run.pk))
