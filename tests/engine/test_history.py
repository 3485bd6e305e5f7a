"""The history read module and the engine's signals: what pages will read, checked on runs
the engine really executed (retries, resumes, compensations, duplicates)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.engine import history, signals
from orchestrator.engine.runs import start_run
from orchestrator.models import AttemptKind, AttemptStatus, EffectStatus, EventKind, RunStatus

from ..workflows import chain, task
from .test_ledger import lose_lease, one_step_run
from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def queries(fn):
    with CaptureQueriesContext(connection) as captured:
        value = fn()
    return value, len(captured.captured_queries)


def test_timeline_links_retries_and_resumes_to_the_try_before():
    chain("timeline", ("pay", task("test.effect_fails_first", retry=[{"max_attempts": 2, "interval_seconds": 0}])),
          ("after", task("demo.noop")))
    run = drain(start_run("timeline")[0])
    entries, count = queries(lambda: history.timeline(run))
    assert count == 2
    first, retry, after = entries
    assert retry.retry_of == first.id and retry.is_retry and first.error_type == "EffectNotDone"
    assert after.retry_of is None and after.queue_wait_ms is not None


def test_a_resumed_attempt_is_linked_as_a_resume_not_a_retry():
    run, claim = one_step_run()
    lose_lease(claim)
    run = drain(run)
    lost, resumed = [e for e in history.timeline(run) if e.state_name == "pay"]
    assert lost.status == AttemptStatus.LOST
    assert resumed.retry_of == lost.id and resumed.resumed_from == lost.id and not resumed.is_retry


def test_state_marks_colour_visited_failed_and_compensated_states():
    chain("marks", ("charge", task("test.charge_with_compensation")), ("explode", task("test.fail")),
          ("never", task("demo.noop")))
    run = drain(start_run("marks")[0])
    assert run.status == RunStatus.FAILED
    marks, count = queries(lambda: history.state_marks(run))
    assert marks == {"charge": "compensated", "explode": "failed"}
    assert count == 2
    compensation = [e for e in history.timeline(run) if e.kind == AttemptKind.COMPENSATION]
    assert compensation[0].effect_key == "charge"


def test_the_ledger_shows_duplicates_and_late_results():
    from orchestrator.engine import ledger

    run, old = one_step_run()
    decision = ledger.open_intent(old, "payment", shared=False, idempotent=False, compensate_path="",
                                  has_check=False)
    lose_lease(old)
    run = drain(run)
    from orchestrator.engine.runs import decide_effect

    decide_effect(run.effects.get().pk, "retry")
    drain(run)
    ledger.confirm(old, decision.effect, {"delivery": 99})
    (entry,), count = queries(lambda: history.effects_ledger(run))
    assert count == 2
    assert entry.status == EffectStatus.CONFIRMED and entry.duplicates == 1 and entry.late_results == 1
    assert entry.decision == "retry" and not entry.needs_decision
    figures = history.duplicate_figures(type(run).objects.filter(pk=run.pk))
    assert figures == {"keys": 1, "duplicated": 1, "possible": 0, "dedup_hits": 0}


def test_signals_are_sent_after_the_transition_commits():
    received = []

    def on_run(run_id, kinds, **kwargs):
        from orchestrator.models import Run

        received.append((run_id, kinds, Run.objects.get(pk=run_id).status))

    signals.run_changed.connect(on_run)
    try:
        chain("signalled", ("a", task("demo.noop")))
        run = drain(start_run("signalled")[0])
    finally:
        signals.run_changed.disconnect(on_run)
    assert received[0][0] == run.pk and EventKind.RUN_STARTED in received[0][1]
    last = received[-1]
    assert EventKind.RUN_SUCCEEDED in last[1] and last[2] == RunStatus.SUCCEEDED  # committed when sent
