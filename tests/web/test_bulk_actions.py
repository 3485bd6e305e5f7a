"""Bulk actions from the runs list: the count and confirmation, refusals (empty filter, no
permission, a count that grew), the background work in chunks (each run acted on once, its
history naming who, a crash mid-chunk losing nothing), stopping, and resuming a lost job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring import bulk
from monitoring.bulk import BulkRefused, aftermath, process_chunk, request_operation, resume_stalled, run_operation
from monitoring.models import BulkOperation, BulkStatus
from monitoring.runlist import RunFilter
from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind, Run, RunStatus

from ..engine.test_transitions import drain
from ..workflows import ORDER, chain, task

pytestmark = pytest.mark.django_db(transaction=True)


def live_orders(count: int, **order) -> list[Run]:
    """Runs left scheduled (no worker plays them): live, so cancellable."""
    return [start_run("order_fulfilment", {**ORDER, **order, "order_id": f"B-{i}"})[0] for i in range(count)]


def failed_order() -> Run:
    return drain(start_run("order_fulfilment", {**ORDER, "items": []})[0])


def failed_gates(count: int, flag) -> list[Run]:
    """Runs failed at a step that succeeds once ``flag`` exists: redrivable."""
    chain("gated", ("gate", task("test.fail_until_flag")))
    return [drain(start_run("gated", {"flag": str(flag)})[0]) for _ in range(count)]


def filters(**query: str) -> RunFilter:
    from django.http import QueryDict

    found = QueryDict(mutable=True)
    found.update(query)
    return RunFilter.from_query(found)


def confirm(client, **query: str):
    return client.get(reverse("monitoring:bulk_confirm"), query)


def start(client, page, **extra: str):
    """Press the confirmation page's button: post its hidden fields."""
    context = page.context
    form = {"action": context["action"], "as_of": context["as_of"], "expected": str(context["eligible"]),
            **context["query"], **extra}
    return client.post(reverse("monitoring:bulk_start"), form)


def test_the_runs_list_counts_what_a_filter_matches_and_offers_bulk_actions(operator, demos):
    live_orders(3)
    failed_order()
    text = operator.get(reverse("monitoring:run_list"), {"status": "running"}).content.decode()
    assert '<strong id="matching-count">3</strong> runs match this filter.' in text
    assert "Cancel all matching" in text and "action=cancel" in text
    unfiltered = operator.get(reverse("monitoring:run_list")).content.decode()
    assert "matching-count" not in unfiltered and "Filter the list to act on every run" in unfiltered


def test_an_empty_filter_is_refused(operator, demos):
    live_orders(2)
    page = confirm(operator, action="cancel")
    assert page.status_code == 400 and "choose at least one filter" in page.content.decode().lower()
    with pytest.raises(BulkRefused, match="at least one filter"):
        request_operation(filters(), "cancel", None, 10, timezone.now())
    assert not BulkOperation.objects.exists()


def test_a_person_without_the_permission_may_not_act(viewer, demos):
    live_orders(1)
    assert confirm(viewer, action="cancel", status="running").status_code == 403
    form = {"action": "cancel", "status": "running", "expected": "1", "as_of": timezone.now().isoformat()}
    assert viewer.post(reverse("monitoring:bulk_start"), form).status_code == 403
    listed = viewer.get(reverse("monitoring:run_list"), {"status": "running"}).content.decode()
    assert "1</strong> run matches this filter" in listed and "Cancel all matching" not in listed
    assert Run.objects.get().status == RunStatus.RUNNING


def test_bulk_cancel_acts_on_every_matching_run_once_and_each_history_names_who(operator, demos, redis_conn):
    targets = live_orders(4)
    other = failed_order()  # matches the workflow, but is not live: not counted, not touched
    page = confirm(operator, action="cancel", workflow="order_fulfilment")
    text = page.content.decode()
    assert '<strong id="bulk-matching">5</strong>' in text and '<strong id="bulk-eligible">4</strong>' in text
    late = live_orders(1, customer="late")[0]  # started after the confirmation: never touched

    response = start(operator, page, reason="supplier outage")
    operation = BulkOperation.objects.get()
    assert response.status_code == 302 and response.url == reverse("monitoring:bulk_detail", args=[operation.pk])
    assert operation.total == 4 and operation.status == BulkStatus.QUEUED
    assert redis_conn.exists(f"rq:job:ratchet-bulk-{operation.pk}")  # handed to the workers

    run_operation(operation.pk)  # what the worker runs
    operation.refresh_from_db()
    assert (operation.status, operation.succeeded, operation.skipped, operation.failed) == (BulkStatus.DONE, 4, 0, 0)
    for run in targets:
        run.refresh_from_db()
        assert run.status == RunStatus.CANCELLED
        (event,) = Event.objects.filter(run=run, kind=EventKind.RUN_CANCELLED)
        assert event.actor.username == "otto"
        assert event.data["reason"] == f"bulk cancel #{operation.pk} by otto: supplier outage"
    late.refresh_from_db()
    other.refresh_from_db()
    assert late.status == RunStatus.RUNNING and other.status == RunStatus.FAILED

    progress = operator.get(reverse("monitoring:bulk_detail", args=[operation.pk]), {"fragment": "progress"},
                            HTTP_HX_REQUEST="true")
    assert progress.status_code == 286  # finished: the page stops polling
    assert '<span id="bulk-processed">4</span> of <span id="bulk-total">4</span>' in progress.content.decode()


def test_a_count_that_grew_since_the_confirmation_is_refused(operator, demos):
    doomed = [start_run("order_fulfilment", {**ORDER, "order_id": f"F-{i}", "items": []})[0] for i in range(3)]
    for run in doomed[:2]:
        drain(run)
    page = confirm(operator, action="redrive", status="failed")
    assert page.context["eligible"] == 2
    drain(doomed[2])  # started before the confirmation, failed after it: the count grew
    response = start(operator, page, follow="yes")
    assert response.status_code == 302
    text = operator.get(response.url).content.decode()
    assert "3 runs match now, not the 2 you confirmed" in text
    assert not BulkOperation.objects.exists()
    assert Run.objects.filter(status=RunStatus.FAILED).count() == 3


def test_a_stale_confirmation_is_refused(operator, demos):
    live_orders(1)
    stale = (timezone.now() - timedelta(hours=2)).isoformat()
    response = operator.post(reverse("monitoring:bulk_start"),
                             {"action": "cancel", "status": "running", "expected": "1", "as_of": stale}, follow=True)
    assert "out of date" in response.content.decode() and not BulkOperation.objects.exists()


def test_bulk_redrive_skips_runs_that_cannot_be_redriven_and_says_why(operator, demos, tmp_path):
    first, second = failed_gates(2, tmp_path / "flag")
    Run.objects.filter(pk=second.pk).update(failure_mode="cost_explosion")
    page = confirm(operator, action="redrive", status="failed")
    start(operator, page)
    operation = BulkOperation.objects.get()
    run_operation(operation.pk)
    operation.refresh_from_db()
    assert (operation.succeeded, operation.skipped, operation.total) == (1, 1, 2)
    assert operation.problems == [{"run": str(second.pk), "message": operation.problems[0]["message"]}]
    assert "skipped: the run used up its budget" in operation.problems[0]["message"]
    first.refresh_from_db()
    assert first.status == RunStatus.RUNNING and first.redrive_count == 1
    (tmp_path / "flag").touch()
    assert drain(first).status == RunStatus.SUCCEEDED
    event = Event.objects.get(run=first, kind=EventKind.RUN_REDRIVEN)
    assert event.actor.username == "otto" and f"bulk redrive #{operation.pk}" in event.data["reason"]
    shown = operator.get(reverse("monitoring:bulk_detail", args=[operation.pk])).content.decode()
    assert "the run used up its budget" in shown and str(second.pk)[:8] in shown


def test_chunks_go_on_from_the_cursor_and_a_crash_mid_chunk_loses_nothing(operator, demos, monkeypatch):
    runs = live_orders(7)
    operation = request_operation(filters(status="running"), "cancel", None, 7, timezone.now())
    assert process_chunk(operation.pk, size=3) is True
    operation.refresh_from_db()
    assert operation.succeeded == 3 and operation.cursor

    calls = []
    real_act_on = bulk._act_on

    def crash_on_the_second(op, run_id, act):
        calls.append(run_id)
        if len(calls) == 2:
            raise SystemExit("worker killed")
        real_act_on(op, run_id, act)

    monkeypatch.setattr(bulk, "_act_on", crash_on_the_second)
    with pytest.raises(SystemExit):
        process_chunk(operation.pk, size=3)
    operation.refresh_from_db()
    assert operation.succeeded == 3  # the chunk's transaction rolled back with its counts
    assert Run.objects.filter(status=RunStatus.CANCELLED).count() == 3
    monkeypatch.setattr(bulk, "_act_on", real_act_on)

    run_operation(operation.pk)
    operation.refresh_from_db()
    assert (operation.status, operation.succeeded, operation.skipped) == (BulkStatus.DONE, 7, 0)
    assert process_chunk(operation.pk) is False  # a second job of a finished operation does nothing
    for run in runs:
        assert Event.objects.filter(run=run, kind=EventKind.RUN_CANCELLED).count() == 1


def test_a_stopped_operation_keeps_what_it_did_and_does_no_more(operator, demos):
    live_orders(5)
    operation = request_operation(filters(status="running"), "cancel", None, 5, timezone.now())
    process_chunk(operation.pk, size=2)
    response = operator.post(reverse("monitoring:bulk_stop", args=[operation.pk]), follow=True)
    assert "stops after the runs in hand" in response.content.decode()
    run_operation(operation.pk)
    operation.refresh_from_db()
    assert operation.status == BulkStatus.STOPPED and operation.succeeded == 2
    assert Run.objects.filter(status=RunStatus.RUNNING).count() == 3


def test_the_sweeper_queues_again_an_operation_whose_job_was_lost(demos, redis_conn, settings):
    live_orders(2)
    operation = request_operation(filters(status="running"), "cancel", None, 2, timezone.now())
    fresh = request_operation(filters(workflow="order_fulfilment"), "cancel", None, 2, timezone.now())
    redis_conn.flushdb()  # both jobs lost
    BulkOperation.objects.filter(pk=operation.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert resume_stalled() == 1
    assert redis_conn.exists(f"rq:job:ratchet-bulk-{operation.pk}")
    assert not redis_conn.exists(f"rq:job:ratchet-bulk-{fresh.pk}")  # not stalled yet


def test_the_sweep_resumes_stalled_operations_through_its_signal(demos, redis_conn):
    from orchestrator.engine.sweeper import sweep

    live_orders(1)
    operation = request_operation(filters(status="running"), "cancel", None, 1, timezone.now())
    redis_conn.flushdb()
    BulkOperation.objects.filter(pk=operation.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    sweep()
    assert redis_conn.exists(f"rq:job:ratchet-bulk-{operation.pk}")


def test_an_unknown_action_is_refused_clearly(operator, demos):
    page = confirm(operator, action="delete", status="running")
    assert page.status_code == 400 and "Unknown bulk action &#x27;delete&#x27;" in page.content.decode()


def test_a_failure_cluster_is_redriven_as_a_whole_from_the_failure_dashboard(operator, demos, tmp_path):
    stuck = failed_gates(3, tmp_path / "flag")
    fingerprint = Run.objects.get(pk=stuck[0].pk).failure_fingerprint
    dashboard = operator.get(reverse("monitoring:failures")).content.decode()
    link = (f"{reverse('monitoring:bulk_confirm')}?action=redrive&amp;status=failed&amp;workflow=gated"
            f"&amp;fingerprint={fingerprint}")
    assert f'<a class="button" href="{link}">Redrive the cluster…</a>' in dashboard
    page = confirm(operator, action="redrive", status="failed", workflow="gated", fingerprint=fingerprint)
    assert page.context["eligible"] == 3
    (tmp_path / "flag").touch()
    start(operator, page)
    operation = BulkOperation.objects.get()
    run_operation(operation.pk)
    progress = operator.get(reverse("monitoring:bulk_detail", args=[operation.pk])).content.decode()
    assert '<span class="aftermath-running"><span class="badge badge-running">running</span> 3</span>' in progress
    assert "(still draining)" in progress
    drain(stuck[0])
    Run.objects.filter(pk=stuck[1].pk).update(status=RunStatus.FAILED)  # as if it failed again
    assert aftermath(operation) == {"failed": 1, "running": 1, "succeeded": 1}
    assert [drain(run).status for run in stuck[::2]] == [RunStatus.SUCCEEDED] * 2
    assert "Redrive the cluster" not in operator.get(reverse("monitoring:failures")).content.decode()  # drained
