"""Throughput benchmark: Ratchet's engine against bare RQ, same Redis, same number of workers.

Both sides run R chains of ten steps on ``workers`` worker processes that are started and
registered before the clock starts (their boot time is not measured):

- engine: R runs of ``noop_chain`` (ten ``demo.noop`` steps) started with ``start_run`` in one
  transaction; the clock runs from its commit (after which the first steps' jobs are
  enqueued) to the latest ``Run.finished_at``. Every run must succeed with its ten steps.
  Inline (the default), a worker continues a run's next step itself; one job per step
  (``per_job``: ``RATCHET_INLINE_CHAIN_LIMIT=1`` in the workers' environment), every step
  goes through RQ, which the workers' own count of the jobs they ran must confirm.
- bare RQ: R chains of ten jobs on plain RQ ``SimpleWorker`` processes, each job enqueueing
  the next (``result_ttl=0``) and counting itself with an INCR; the clock runs from just
  before the first enqueue to the moment the last job counted itself.

Fan-out: one run of a parallel state with 100 no-op branches and its join, repeated; the
time is the run's wall time, start to finish (``Run.finished_at - created_at``), on the same
worker processes.

LangGraph and the PostgreSQL commit floor are in bench_langgraph.py and bench_floor.py; the
rounds and the summary lines in bench_rounds.py. Bare RQ workers import this module, so
nothing at module level needs Django.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, Worker, get_current_job

from .processes import WorkerPool, stop_process

WORKFLOW = "noop_chain"
CHAIN_LENGTH = 10
BARE_QUEUE = "bench_bare"
BARE_DONE_KEY = "ratchet:bench:bare:done"
BARE_END_KEY = "ratchet:bench:bare:end"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"
BASE_DIR = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.05

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EngineResult:
    steps: int
    seconds: float
    step_overhead_ms_p50: float
    rq_jobs: int = 0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    per_s = steps_per_s


@dataclass(frozen=True)
class BareResult:
    jobs: int
    seconds: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    per_s = jobs_per_s


def bench_redis_url(environ: dict[str, str] | None = None) -> str:
    """The Redis database the bench uses (and FLUSHES): $RATCHET_BENCH_REDIS_URL, else
    $REDIS_URL, else db 3 of the local server."""
    environ = os.environ if environ is None else environ
    return environ.get("RATCHET_BENCH_REDIS_URL") or environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def deadline_for(runs: int) -> float:
    """A generous limit so a stuck benchmark fails instead of hanging."""
    return time.monotonic() + 120 + runs * CHAIN_LENGTH * 0.1


# --- Bare RQ -------------------------------------------------------------------------


def bare_step(chain: int, step: int, total: int) -> None:
    """One bare RQ job: enqueue the chain's next job, then count itself."""
    job = get_current_job()
    assert job is not None
    connection = job.connection
    if step < CHAIN_LENGTH:
        Queue(job.origin, connection=connection).enqueue(bare_step, chain, step + 1, total, result_ttl=0)
    if connection.incr(BARE_DONE_KEY) == total:
        connection.set(BARE_END_KEY, repr(time.time()))


def start_bare_workers(count: int, redis_url: str) -> list[subprocess.Popen[bytes]]:
    command = [
        sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker",
        "--logging_level", "WARNING", "--path", str(BASE_DIR), BARE_QUEUE,
    ]
    return [subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True) for _ in range(count)]


def wait_for_workers(redis: Redis, count: int, alive: Callable[[], bool]) -> None:
    """Block until ``count`` RQ workers registered on this Redis database."""
    limit = time.monotonic() + 60
    while len(Worker.all(connection=redis)) < count:
        if not alive():
            raise RuntimeError("a worker process exited before registering")
        if time.monotonic() > limit:
            raise RuntimeError(f"{count} workers did not register within 60s")
        time.sleep(POLL_SECONDS)


def measure_bare(runs: int, workers: int, redis_url: str, progress: Progress) -> BareResult:
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    total = runs * CHAIN_LENGTH
    processes = start_bare_workers(workers, redis_url)
    try:
        wait_for_workers(redis, workers, lambda: all(p.poll() is None for p in processes))
        progress(f"bare: {workers} rq SimpleWorker(s) ready; enqueueing {runs} chains of {CHAIN_LENGTH} jobs")
        queue = Queue(BARE_QUEUE, connection=redis)
        started = time.time()
        for chain in range(runs):
            queue.enqueue(bare_step, chain, 1, total, result_ttl=0)
        end = _wait_bare(redis, total, started, runs, progress)
    finally:
        for process in processes:
            stop_process(process)
    return BareResult(jobs=total, seconds=end - started)


def _wait_bare(redis: Redis, total: int, started: float, runs: int, progress: Progress) -> float:
    limit, next_report = deadline_for(runs), time.monotonic() + 2
    while (end := redis.get(BARE_END_KEY)) is None:
        if time.monotonic() > limit:
            raise RuntimeError(f"bare RQ: only {int(redis.get(BARE_DONE_KEY) or 0)}/{total} jobs finished in time")
        if time.monotonic() > next_report:
            progress(f"bare: {int(redis.get(BARE_DONE_KEY) or 0)}/{total} jobs done ({time.time() - started:.1f}s)")
            next_report += 2
        time.sleep(POLL_SECONDS)
    return float(end)


# --- Engine (needs Django) ---------------------------------------------------------------


def prepare_database(progress: Progress) -> None:
    """Create the configured PostgreSQL database if it is missing, then migrate it."""
    from django.core.management import call_command
    from django.db import OperationalError, connection

    if connection.vendor != "postgresql":
        raise RuntimeError("the benchmark measures PostgreSQL: set DATABASE_URL=postgres://... (make bench does)")
    try:
        connection.ensure_connection()
    except OperationalError:
        _create_database(connection.settings_dict)
        progress(f"created database {connection.settings_dict['NAME']}")
    call_command("migrate", verbosity=0, interactive=False)
    progress(f"database {connection.settings_dict['NAME']} migrated")


def _create_database(params: dict[str, Any]) -> None:
    """CREATE DATABASE through the server's ``postgres`` maintenance database."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(**conninfo(params, "postgres"), autocommit=True) as maintenance:
        maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["NAME"])))


def conninfo(params: dict[str, Any], dbname: str | None = None) -> dict[str, Any]:
    """psycopg keyword arguments for a Django database's server (its database, or ``dbname``)."""
    server = {key.lower(): params[key] for key in ("HOST", "PORT", "USER", "PASSWORD") if params.get(key)}
    return {**server, "dbname": dbname or params["NAME"]}


def measure_engine(runs: int, workers: int, redis_url: str, progress: Progress, per_job: bool = False) -> EngineResult:
    """Run the engine side, inline or one job per step. The caller points settings.REDIS_URL at
    ``redis_url``."""
    from django.core.management import call_command
    from django.db.models import Max

    from .models import Run

    call_command("load_demo", verbosity=0, stdout=io.StringIO())
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    deleted, _ = Run.objects.filter(workflow__name=WORKFLOW).delete()
    vacuum_engine_tables()
    label = "engine/job" if per_job else "engine"
    progress(f"{label}: flushed {redis_url}, deleted {deleted} rows of earlier benchmark runs")
    env = {"REDIS_URL": redis_url, "RATCHET_LOG_LEVEL": "WARNING", "DATABASE_URL": os.environ.get("DATABASE_URL", "")}
    if per_job:
        env["RATCHET_INLINE_CHAIN_LIMIT"] = "1"
    pool = WorkerPool(env=env)
    pool.start(workers)
    try:
        wait_for_workers(redis, workers, lambda: len(pool.alive()) == len(pool.processes))
        progress(f"{label}: {workers} worker(s) ready; starting {runs} runs of {WORKFLOW}")
        started = _start_runs(runs)
        _wait_engine(runs, started, progress, label)
        rq_jobs = _rq_jobs_run(redis, runs * CHAIN_LENGTH if per_job else runs)
    finally:
        pool.stop()
    finished = Run.objects.filter(workflow__name=WORKFLOW).aggregate(end=Max("finished_at"))["end"]
    steps = _succeeded_steps()
    if steps != runs * CHAIN_LENGTH:
        raise RuntimeError(f"{label}: {steps} succeeded steps, expected {runs * CHAIN_LENGTH}")
    if per_job and rq_jobs < steps:
        raise RuntimeError(f"{label}: the workers ran {rq_jobs} RQ jobs for {steps} steps: "
                           "RATCHET_INLINE_CHAIN_LIMIT=1 did not put every step through RQ")
    return EngineResult(steps=steps, seconds=(finished - started).total_seconds(),
                        step_overhead_ms_p50=step_overhead_ms_p50(), rq_jobs=rq_jobs)


def _rq_jobs_run(redis: Redis, at_least: int, seconds: float = 3) -> int:
    """Jobs the registered workers ran successfully (RQ's own per-worker count). A job's count
    lands just after its run finished, so wait briefly for ``at_least``."""
    limit = time.monotonic() + seconds
    while (jobs := sum(w.successful_job_count for w in Worker.all(connection=redis))) < at_least:
        if time.monotonic() > limit:
            break
        time.sleep(POLL_SECONDS)
    return jobs


FANOUT_WORKFLOW = "bench_fanout"


@dataclass(frozen=True)
class FanoutResult:
    branches: int
    ms: list[float]

    @property
    def ms_p50(self) -> float:
        ordered = sorted(self.ms)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def measure_fanout(branches: int, repeats: int, workers: int, redis_url: str, progress: Progress) -> FanoutResult:
    """Time ``repeats`` runs, one after another, of a fan-out to ``branches`` no-op branches."""
    from .engine.runs import start_run
    from .engine.workflows import publish
    from .models import Run, RunStatus

    publish({"name": FANOUT_WORKFLOW, "start_at": "fan", "states": {"fan": {
        "type": "parallel", "end": True, "branches": {
            f"b{i}": {"start_at": f"work_{i}", "states": {f"work_{i}": {"type": "task", "handler": "demo.noop",
                                                                         "end": True}}}
            for i in range(branches)}}}})
    Run.objects.filter(workflow__name=FANOUT_WORKFLOW).delete()
    vacuum_engine_tables()
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = {"REDIS_URL": redis_url, "RATCHET_LOG_LEVEL": "WARNING", "DATABASE_URL": os.environ.get("DATABASE_URL", "")}
    pool = WorkerPool(env=env)
    pool.start(workers)
    timings = []
    try:
        wait_for_workers(redis, workers, lambda: len(pool.alive()) == len(pool.processes))
        for repeat in range(repeats):
            run, _ = start_run(FANOUT_WORKFLOW)
            limit = time.monotonic() + 60
            while (run := Run.objects.get(pk=run.pk)).status == RunStatus.RUNNING:
                if time.monotonic() > limit:
                    raise RuntimeError(f"fan-out run {run.pk} did not finish in 60 s")
                time.sleep(0.01)
            if run.status != RunStatus.SUCCEEDED:
                raise RuntimeError(f"fan-out run ended {run.status}: {run.error}")
            timings.append((run.finished_at - run.created_at).total_seconds() * 1000)
            progress(f"fanout: run {repeat + 1}/{repeats} took {timings[-1]:.1f} ms")
    finally:
        pool.stop()
    return FanoutResult(branches, timings)


def vacuum_engine_tables() -> None:
    """Clear the rows the bench's last runs left dead, before the clock starts, as autovacuum
    would between rounds (it is off on some machines, and each round deletes the last one's
    runs: dead rows then pile up across rounds and slow the later ones). PostgreSQL only."""
    from django.apps import apps
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    tables = [model._meta.db_table for model in apps.get_app_config("orchestrator").get_models()
              if not model._meta.proxy and model._meta.managed]
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(connection.ops.quote_name(t) for t in tables)}")


def _start_runs(runs: int) -> Any:
    """Start the runs in one transaction; returns the commit time, when their jobs go to Redis.

    One transaction, so that submitting 200 runs is not timed: the clock starts when every
    first step is dispatched at once, as the bare RQ side enqueues every chain at once.
    """
    from django.db import transaction

    from .engine.runs import start_run
    from .models import Workflow

    workflow = Workflow.objects.get(name=WORKFLOW)
    committed: list[Any] = []
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(_now()))  # runs before the runs' enqueues
        for _ in range(runs):
            start_run(workflow)
    return committed[0]


def _now() -> Any:
    from django.utils import timezone

    return timezone.now()


def _wait_engine(runs: int, started: Any, progress: Progress, label: str) -> None:
    from .models import Run, RunStatus

    limit, next_report = deadline_for(runs), time.monotonic() + 2
    mine = Run.objects.filter(workflow__name=WORKFLOW)
    while (done := mine.filter(status=RunStatus.SUCCEEDED).count()) < runs:
        bad = mine.exclude(status__in=(RunStatus.SUCCEEDED, RunStatus.RUNNING)).values_list("status", flat=True)
        if bad:
            raise RuntimeError(f"{label}: runs ended unexpectedly: {sorted(set(bad))}")
        if time.monotonic() > limit:
            raise RuntimeError(f"{label}: only {done}/{runs} runs succeeded in time")
        if time.monotonic() > next_report:
            elapsed = (_now() - started).total_seconds()
            progress(f"{label}: {done}/{runs} runs succeeded ({elapsed:.1f}s)")
            next_report += 2
        time.sleep(POLL_SECONDS)


def _succeeded_steps() -> int:
    from .models import AttemptKind, AttemptStatus, StepAttempt

    return StepAttempt.objects.filter(
        run__workflow__name=WORKFLOW, kind=AttemptKind.STEP, status=AttemptStatus.SUCCEEDED
    ).count()


def step_overhead_ms_p50() -> float:
    """Median wall time per step as the engine sees it, in milliseconds.

    For every succeeded step attempt of the benchmark's runs except each run's first (steps
    2..10): its ``finished_at`` minus the ``finished_at`` of the run's previous succeeded
    step (LAG over the run's attempts by sequence). That gap covers the checkpoint of the
    previous step, scheduling and claiming this one (inline or through RQ), and running its
    no-op handler. PostgreSQL only (percentile_cont).
    """
    from django.db import connection

    from .models import AttemptKind, AttemptStatus, Run, StepAttempt, Workflow

    query = f"""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap_ms) FROM (
            SELECT EXTRACT(EPOCH FROM a.finished_at - LAG(a.finished_at) OVER (
                       PARTITION BY a.run_id ORDER BY a.sequence, a.id)) * 1000 AS gap_ms
            FROM {StepAttempt._meta.db_table} a
            JOIN {Run._meta.db_table} r ON r.id = a.run_id
            JOIN {Workflow._meta.db_table} w ON w.id = r.workflow_id
            WHERE w.name = %s AND a.kind = %s AND a.status = %s
        ) gaps WHERE gap_ms IS NOT NULL
    """
    with connection.cursor() as cursor:
        cursor.execute(query, [WORKFLOW, AttemptKind.STEP.value, AttemptStatus.SUCCEEDED.value])
        value = cursor.fetchone()[0]
    return float(value) if value is not None else float("nan")
