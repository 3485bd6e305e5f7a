"""The one-statement checkpoint (engine/fast_checkpoint.py) against the general path: the same
rows for the same run; the general path whenever the run changed under the worker; and a
context whose bytes per step do not grow with the run's length."""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.engine import clock, dispatch, fast_checkpoint
from orchestrator.engine.claims import Claimant, Usage
from orchestrator.engine.executor import checkpoint, run_attempt
from orchestrator.engine.runs import cancel_run, start_run
from orchestrator.engine.transitions import claim_attempt
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Event, EventKind, Fork, Run, RunStatus, StepAttempt

from ..workflows import chain, task

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

ONE_STATEMENT = "WITH ok AS"


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement checkpoint is PostgreSQL's; SQLite always takes the general path")


@pytest.fixture
def fast(settings):
    def use(on: bool) -> None:
        settings.RATCHET = {**settings.RATCHET, "FAST_CHECKPOINT": on}
    return use


def run_here(workflow: str, payload: dict[str, Any] | None = None,
             order: Callable[[list[int]], list[int]] = list) -> tuple[Run, list[str]]:
    """Start a run and let this process run its jobs (the due ones in ``order``) until it ends;
    the SQL it sent."""
    run, _ = start_run(workflow, payload or {})
    clock.sync()
    with CaptureQueriesContext(connection) as queries:
        while due := list(run.attempts.filter(status=AttemptStatus.SCHEDULED).values_list("pk", flat=True)):
            for attempt_id in order(sorted(due)):
                run_attempt(attempt_id)
    return Run.objects.get(pk=run.pk), [q["sql"] for q in queries.captured_queries]


def rows(run: Run, volatile: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What a run left, without what differs between two runs anyway (ids, times, tokens)."""
    volatile = {"duration_ms", "queue_wait_ms", "worker", *volatile}
    return {
        "run": (run.status, run.steps_used, run.tokens_used, str(run.cost_used), run.output, run.context),
        "attempts": [
            (a.state_name, a.sequence, a.attempt, a.kind, a.status, a.queue, a.input, a.output, a.tokens,
             str(a.cost), a.worker != "", a.lease_expires_at, a.claim_token is not None, a.timeout_at is not None)
            for a in run.attempts.order_by("sequence", "id")],
        "events": [(e.kind, e.state_name, e.attempt.state_name if e.attempt else None,
                    {k: v for k, v in e.data.items() if k not in volatile})
                   for e in Event.objects.filter(run=run).select_related("attempt").order_by("id")],
    }


@pytest.mark.parametrize("chain_limit", [200, 1], ids=["inline", "one job per step"])
def test_the_one_statement_path_leaves_the_same_rows_as_the_general_path(fast, settings, chain_limit):
    settings.RATCHET = {**settings.RATCHET, "INLINE_CHAIN_LIMIT": chain_limit}
    chain("parity",
          ("a", task("test.answer", args={"output": {"n": 1, "text": "ünïcode ✓"}})),
          ("b", task("test.usage", args={"tokens": 120, "cost": 0.25})),
          ("c", task("test.answer", args={"output": {"n": 3}, "seen": True}, input={"who": "input.who"})),
          ("d", task("demo.noop")))
    fast(True)
    quick, quick_sql = run_here("parity", {"who": "Ada"})
    fast(False)
    general, general_sql = run_here("parity", {"who": "Ada"})
    assert sum(sql.lstrip().startswith(ONE_STATEMENT) for sql in quick_sql) == 4  # a->b, b->c, c->d, d ends
    assert not any(sql.lstrip().startswith(ONE_STATEMENT) for sql in general_sql)
    assert quick.status == RunStatus.SUCCEEDED and quick.tokens_used == 120
    assert quick.context["c"] == {"n": 3, "seen": ["a", "b", "input"]}
    assert rows(quick) == rows(general)


def test_a_run_changed_by_someone_else_goes_through_the_general_path(fast):
    """The run row's version moved on (an operator cancelled it) between the claim and the
    checkpoint: the one statement writes nothing, and the general path discards the result."""
    fast(True)
    chain("changed", ("a", task("demo.noop")), ("b", task("demo.noop")))
    run, _ = start_run("changed")
    clock.sync()
    claim = claim_attempt(run.attempts.get().pk, "w1")
    assert claim is not None and claim.run_xmin is not None
    cancel_run(run.pk)
    following = checkpoint(claim, {"ok": True}, Usage(), Claimant(worker="w1", queue="default", chain_left=5))
    assert following is None
    assert StepAttempt.objects.filter(run=run, state_name="b").count() == 0
    assert Event.objects.filter(run=run, kind=EventKind.RESULT_DISCARDED).count() == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_harmless_write_to_the_run_only_costs_the_general_path_once(fast):
    """Any write to the run row refuses the one statement (it cannot tell a harmless one); the
    general path checkpoints, and reads the row's new version for the steps after it."""
    fast(True)
    chain("bumped", ("a", task("demo.noop")), ("b", task("demo.noop")), ("c", task("demo.noop")))
    run, _ = start_run("bumped")
    clock.sync()
    claim = claim_attempt(run.attempts.get().pk, "w1")
    Run.objects.filter(pk=run.pk).update(human_wait_seconds=1.5)
    claimant = Claimant(worker="w1", queue="default", chain_left=5)
    with CaptureQueriesContext(connection) as general:
        following = checkpoint(claim, {"ok": True}, Usage(), claimant)
    assert following is not None and following.attempt.state_name == "b"
    kinds = [q["sql"].lstrip()[:10] for q in general.captured_queries]
    tried = kinds.index(ONE_STATEMENT[:10])  # tried once, wrote nothing, then the general path
    assert kinds.count(ONE_STATEMENT[:10]) == 1 and kinds[tried + 1] == "BEGIN"
    with CaptureQueriesContext(connection) as quick:
        last = checkpoint(following, {"ok": True}, Usage(), claimant)
    assert [q["sql"].lstrip().startswith(ONE_STATEMENT) for q in quick.captured_queries] == [True]
    assert last is not None and last.attempt.status == AttemptStatus.RUNNING
    assert Run.objects.get(pk=run.pk).human_wait_seconds == 1.5  # the other write is kept


def prepared_statements() -> dict[str, tuple[int, int]]:
    """This connection's prepared statements: their first words -> (generic plans, custom plans)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        found: dict[str, tuple[int, int]] = {}
        for statement, generic, custom in cursor.fetchall():
            head = " ".join(statement.split())[:40]
            previous = found.get(head, (0, 0))
            found[head] = (previous[0] + generic, previous[1] + custom)
        return found


def test_the_claim_and_checkpoint_statements_are_prepared_once_and_planned_once(fast):
    """Django opens connections with psycopg's preparing off: without switching it back on,
    every checkpoint was parsed and planned anew (about half of PostgreSQL's time per step)."""
    fast(True)
    chain("prepared", *[(f"s{i}", task("demo.noop")) for i in range(12)])
    run, _ = run_here("prepared")
    assert run.status == RunStatus.SUCCEEDED
    statements = prepared_statements()
    checkpoints = [plans for head, plans in statements.items() if head.startswith(ONE_STATEMENT)]
    assert checkpoints, f"no checkpoint statement was prepared: {statements}"
    generic, custom = max(checkpoints)
    assert generic + custom >= 10  # one statement per step, reused, not one each
    assert generic >= 5  # PostgreSQL moved to the plan it keeps, instead of planning each time


def test_a_step_writes_as_many_bytes_at_the_end_of_a_long_run_as_at_its_start(fast, monkeypatch):
    """50 steps of 20 KB outputs (incompressible): the WAL each checkpoint writes stays flat.
    The context is not rewritten at each step (it was: the run's row carried the whole
    context, 1 MB by the end). Medians of ten, so a checkpoint's full-page writes do not count."""
    fast(True)
    big = {"text": secrets.token_hex(10_000)}
    chain("long_outputs", *[(f"s{i}", task("test.answer", args={"output": big})) for i in range(50)])
    written: list[int] = []
    one_statement = fast_checkpoint.execute_prepared

    def measured(sql: str, params: list[Any]) -> tuple[Any, ...]:
        if not sql.lstrip().startswith(ONE_STATEMENT):
            return one_statement(sql, params)  # a claim
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_insert_lsn()")
            before = cursor.fetchone()[0]
            result = one_statement(sql, params)
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [before])
            written.append(int(cursor.fetchone()[0]))
        return result

    monkeypatch.setattr(fast_checkpoint, "execute_prepared", measured)
    run, _ = run_here("long_outputs")
    assert run.status == RunStatus.SUCCEEDED and run.context["s49"] == big and len(written) == 50
    first, last = statistics.median(written[:10]), statistics.median(written[-10:])
    assert last < first * 1.5, (first, last)
    assert last < 3 * len(big["text"]), last  # the output once, and little else


def fan_out(name: str, branches: int) -> str:
    publish({"name": name, "start_at": "fan", "states": {
        "fan": {"type": "parallel", "next": "after", "branches": {
            f"b{i}": {"start_at": f"w{i}", "states": {
                f"w{i}": task("test.answer", args={"output": {"n": i}}, next=f"x{i}"),
                f"x{i}": task("test.usage", args={"tokens": 10}, end=True)}}
            for i in range(branches)}},
        "after": task("demo.noop", end=True)}})
    return name


def branch_rows(run: Run, volatile: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {**rows(run, volatile),
            "lines": [(x.path, x.status, x.output, x.context) for x in run.lines.order_by("path")],
            "forks": [(f.path, f.status, f.done, f.failed, f.needed) for f in run.forks.order_by("path")]}


def test_a_fan_out_leaves_the_same_rows_down_both_paths(fast, redis_conn):
    """Every branch but the one that completes the join ends in one statement; the last joins
    through the general path. Run in one process, with the branches ended in the same order.

    The worker that ends a branch takes the next waiting branch's step itself, in the same
    statement, and withdraws that step's job: the one difference is that its claim says so
    (``inline``, as a main-line step taken inline) where a job's claim says how long it queued."""
    fast(True)
    quick, quick_sql = run_here(fan_out("fan_parity", 5))
    fast(False)
    # The order the fast path ends them in: the first job's branch, then the newest waiting one.
    general, general_sql = run_here("fan_parity", order=lambda due: [*due[:1], *reversed(due[1:])])
    # Tried for each of the 5 branches' ends; the 5th would join, so it wrote nothing there.
    assert sum(sql.lstrip().startswith("WITH gate") for sql in quick_sql) == 5
    assert not any(sql.lstrip().startswith("WITH gate") for sql in general_sql)
    assert quick.status == RunStatus.SUCCEEDED and quick.tokens_used == 50
    assert branch_rows(quick, frozenset({"inline"})) == branch_rows(general, frozenset({"inline"}))
    taken = Event.objects.filter(run=quick, kind=EventKind.STEP_CLAIMED, state_name__in=["w1", "w2", "w3", "w4"])
    assert [e.data.get("inline") for e in taken] == [True] * 4
    queued = set(redis_conn.lrange(dispatch.queue("default").key, 0, -1))
    withdrawn = {dispatch.job_id(a.pk).encode() for a in quick.attempts.filter(state_name__in=["w1", "w2"])}
    assert withdrawn and not withdrawn & queued
    assert {dispatch.job_id(a.pk).encode() for a in general.attempts.filter(state_name="w1")} <= queued


def test_a_branch_end_takes_no_step_that_must_be_checked_at_its_claim(fast, settings):
    """A rate-limited step is claimed through ``claim_attempt``, where the limit is taken: a
    worker ending a branch leaves it to its job (its attempt was scheduled without
    ``claim_deadline_seconds``)."""
    fast(True)
    limits = {handler: {"rate": 1000, "burst": 100} for handler in ("test.answer", "test.usage")}
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": limits}
    run, sql = run_here(fan_out("fan_limited", 4))
    assert run.status == RunStatus.SUCCEEDED
    assert sum(statement.lstrip().startswith("WITH gate") for statement in sql) == 4  # each end tried it
    branch_steps = StepAttempt.objects.filter(run=run, line__isnull=False)
    assert branch_steps.count() == 8 and not branch_steps.exclude(claim_deadline_seconds=None).exists()
    claims = Event.objects.filter(run=run, kind=EventKind.STEP_CLAIMED)
    assert claims.count() == 9 and not any(event.data.get("inline") for event in claims)


def test_a_branch_end_the_database_refuses_rolls_back_and_fails_the_attempt_at_once(fast):
    """The branch's end is sent as one transaction in one round trip: refused (a lone surrogate
    in its output), the whole transaction is rolled back, the connection stays usable, and the
    general path fails the attempt as it would any refused checkpoint."""
    fast(True)
    publish({"name": "fan_refused", "start_at": "fan", "states": {
        "fan": {"type": "parallel", "end": True, "branches": {
            "ok": {"start_at": "fine", "states": {"fine": task("demo.noop", end=True)}},
            "bad": {"start_at": "worse", "states": {
                "worse": task("test.unstorable", args={"kind": "surrogate"}, end=True)}}}}}})
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    run, sent = run_here("fan_refused")
    assert connection.connection.info.backend_pid == backend  # rolled back, not dropped and reopened
    assert sum(sql.lstrip().startswith("WITH gate") for sql in sent) >= 1
    assert run.status == RunStatus.FAILED
    bad = run.attempts.get(state_name="worse")
    assert bad.status == AttemptStatus.FAILED and bad.error["type"] == "CheckpointRefused"
    assert Fork.objects.get(run=run).done <= 1  # the refused end counted nothing
    with connection.cursor() as cursor:  # no transaction left open or aborted
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_branch_of_a_run_cancelled_meanwhile_is_not_ended_by_the_one_statement(fast):
    """Claimed, then the run is cancelled: the statement's gate finds the run and the branch
    stopped and writes nothing; the general path discards the result."""
    fast(True)
    run, _ = start_run(fan_out("fan_cancel", 3))
    clock.sync()
    claimant = Claimant(worker="w1", queue="default", chain_left=5)
    following = checkpoint(claim_attempt(run.attempts.get(state_name="w0").pk, "w1"), {"n": 0}, Usage(), claimant)
    assert following is not None and following.attempt.state_name == "x0"
    cancel_run(run.pk)
    with CaptureQueriesContext(connection) as sent:
        assert checkpoint(following, {}, Usage(), claimant) is None
    assert [q["sql"].lstrip()[:9] for q in sent.captured_queries].count("WITH gate") == 1
    assert Event.objects.filter(run=run, kind=EventKind.RESULT_DISCARDED).count() == 1
    assert not run.lines.filter(status="succeeded").exists() and Fork.objects.get(run=run).done == 0


def test_branches_that_spend_past_the_run_s_token_budget_fail_it(fast):
    """Branches charge the run's totals, which every branch moves: with a token budget, a branch
    that spends ends through the general path, which charges the locked row and stops the run."""
    fast(True)
    publish({"name": "fan_budget", "start_at": "fan", "budgets": {"max_tokens": 25}, "states": {
        "fan": {"type": "parallel", "end": True, "branches": {
            f"b{i}": {"start_at": f"w{i}", "states": {f"w{i}": task("test.usage", args={"tokens": 10}, end=True)}}
            for i in range(4)}}}})
    run, sent = run_here("fan_budget")
    assert run.status == RunStatus.FAILED and run.failure_mode == "cost_explosion"
    assert run.tokens_used == 30  # the third branch broke it; the fourth never ran
    assert not any(sql.lstrip().startswith("WITH gate") for sql in sent)
