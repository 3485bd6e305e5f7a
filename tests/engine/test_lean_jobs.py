"""Attempt jobs run by the worker without RQ's per-job records (engine/worker.py): what RQ
would leave behind is gone, what it counts is counted, a job that raises is still RQ's failure,
and every other job still takes RQ's own path."""

from __future__ import annotations

import secrets

import pytest
from redis.connection import AbstractConnection
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from orchestrator.engine import clock, dispatch, jobs
from orchestrator.engine.runs import start_run
from orchestrator.engine.worker import LeanAttemptJobs
from orchestrator.models import Run, RunStatus, StepAttempt

from ..workflows import chain, task

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine, settings):
    settings.RATCHET = {**settings.RATCHET, "INLINE_CHAIN_LIMIT": 1}  # every step is a job
    clock.sync()


def work(redis_conn) -> Worker:
    """Run the default queue's jobs in this process until it is empty; the worker as Redis has it."""
    worker = LeanAttemptJobs([Queue("default", connection=redis_conn)], connection=redis_conn,
                             name=f"lean-{secrets.token_hex(4)}")
    worker.work(burst=True)
    return Worker.find_by_key(worker.key, connection=redis_conn)


@pytest.fixture
def round_trips(monkeypatch) -> list[int]:
    """Counts what this process sends to Redis: one packed send is one round trip (a pipeline
    sends all its commands at once)."""
    sent = [0]
    original = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent[0] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


def rq_records(redis_conn) -> dict[str, int]:
    queue = Queue("default", connection=redis_conn)
    return {
        "job hashes": len(redis_conn.keys("rq:job:*")),
        "execution records": len(redis_conn.keys("rq:execution*")),
        "intermediate": redis_conn.llen(queue.intermediate_queue_key),
        "queued": queue.count,
        "started": StartedJobRegistry(queue=queue).count,
        "finished": FinishedJobRegistry(queue=queue).count,
    }


def round_trips_per_job(redis_conn, counter: list[int], name: str) -> float:
    """Redis round trips per job of a chain of steps, one job each: a 7-step chain against a
    1-step one, so the worker's own start and end cancel out."""
    sent = []
    for steps in (1, 7):
        chain(f"{name}{steps}", *[(f"s{i}", task("demo.noop")) for i in range(steps)])
        run, _ = start_run(f"{name}{steps}")
        counter[0] = 0
        worker = work(redis_conn)
        sent.append(counter[0])
        assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
        assert worker.successful_job_count == steps
    return (sent[1] - sent[0]) / 6


def test_attempt_jobs_are_written_as_rq_s_own_enqueue_writes_them(redis_conn):
    """Written without RQ's Job objects (engine/jobs.py), an attempt's job leaves the hash, the
    queue entry and the queue's registration RQ's enqueue leaves, but for the times; RQ reads
    it back as the same call."""
    queue = Queue("default", connection=redis_conn)
    written = {}
    for way in ("rq", "engine"):
        redis_conn.flushdb()
        if way == "rq":
            queue.enqueue_many([jobs.rq_job_data(7)])
        else:
            pipe = redis_conn.pipeline()
            jobs.add_jobs(pipe, queue, [7])
            pipe.execute()
        fields = redis_conn.hgetall(Job.key_for(jobs.job_id(7)))
        assert fields.pop(b"created_at") and fields.pop(b"enqueued_at")
        written[way] = (fields, redis_conn.lrange(queue.key, 0, -1), redis_conn.smembers(queue.redis_queues_keys))
    assert written["engine"] == written["rq"]
    job = Job.fetch(jobs.job_id(7), connection=redis_conn)
    assert (job.func_name, job.args, job.get_status(), job.origin) == (jobs.JOB_FUNCTION, (7,), "queued", "default")


def test_attempt_jobs_run_to_the_end_and_leave_no_rq_records(redis_conn, round_trips):
    chain("lean", ("a", task("demo.noop")), ("b", task("demo.noop")), ("c", task("demo.noop")))
    run, _ = start_run("lean")
    worker = work(redis_conn)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert StepAttempt.objects.filter(run=run).count() == 3
    assert rq_records(redis_conn) == {"job hashes": 0, "execution records": 0, "intermediate": 0, "queued": 0,
                                      "started": 0, "finished": 0}
    assert worker.successful_job_count == 3
    assert worker.total_working_time > 0
    assert worker.get_state() == "idle" and worker.get_current_job_id() is None


def test_an_attempt_job_costs_four_redis_round_trips_where_rq_s_own_path_costs_twenty(
        redis_conn, round_trips, settings):
    """Dequeue (2), before the job (1), after it with the next step's job (1); RQ's own path adds
    its execution records, registries, job status, the enqueue on its own, and a heartbeat and
    a check for a suspension before every job (here, at most once a second)."""
    assert round_trips_per_job(redis_conn, round_trips, "lean") == 4
    settings.RATCHET = {**settings.RATCHET, "LEAN_JOBS": False}
    assert round_trips_per_job(redis_conn, round_trips, "full") >= 18


def test_the_jobs_of_branches_a_worker_took_itself_leave_their_queue_together(redis_conn, round_trips, settings):
    """A branch's end takes the next branch's step (PostgreSQL's one-statement path): that step's
    job is taken off its queue in the worker's next round trip, or once 16 wait, not in one
    round trip each. None is left behind, and no job hash."""
    from django.db import connection

    from orchestrator.engine.workflows import publish

    if connection.vendor != "postgresql":
        pytest.skip("a branch's end takes the next branch's step on PostgreSQL's one-statement path only")
    settings.RATCHET = {**settings.RATCHET, "INLINE_CHAIN_LIMIT": 200}
    work(redis_conn)  # the first worker's start cleans RQ's registries; the measured ones' do not
    sent = []
    for branches in (1, 40):
        publish({"name": f"taken{branches}", "start_at": "fan", "states": {"fan": {
            "type": "parallel", "end": True, "branches": {
                f"b{i}": {"start_at": f"w{i}", "states": {f"w{i}": task("demo.noop", end=True)}}
                for i in range(branches)}}}})
        run, _ = start_run(f"taken{branches}")
        round_trips[0] = 0
        worker = work(redis_conn)
        sent.append(round_trips[0])
        assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
        assert worker.successful_job_count == 1  # the first branch's job: it took the others itself
        assert rq_records(redis_conn) == {"job hashes": 0, "execution records": 0, "intermediate": 0,
                                          "queued": 0, "started": 0, "finished": 0}
    # 39 branches taken: their jobs leave in two batches of 16, the last 7 with the job's end.
    assert sent[1] - sent[0] == 2


def test_an_attempt_job_that_raises_is_in_rq_s_failed_registry(redis_conn, monkeypatch):
    """What the engine cannot handle (the database gone past its retries) stays visible where
    operators look for failed jobs; the attempt itself is the sweeper's to recover."""
    chain("raises", ("a", task("demo.noop")))
    run, _ = start_run("raises")

    def broken(attempt_id: int) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("orchestrator.engine.worker.run_attempt", broken)
    worker = work(redis_conn)
    failed = FailedJobRegistry(queue=Queue("default", connection=redis_conn))
    assert failed.get_job_ids() == [dispatch.job_id(run.attempts.get().pk)]
    assert worker.failed_job_count == 1 and worker.successful_job_count == 0
    assert worker.get_state() == "idle"


def test_other_jobs_take_rq_s_own_path(redis_conn):
    queue = Queue("default", connection=redis_conn)
    job = queue.enqueue("orchestrator.engine.clock.now", result_ttl=60)
    worker = work(redis_conn)
    assert job.get_status(refresh=True) == "finished"
    assert FinishedJobRegistry(queue=queue).get_job_ids() == [job.id]
    assert worker.successful_job_count == 1


def test_jobs_a_step_dispatches_go_before_the_worker_runs_another_step(redis_conn, monkeypatch, settings):
    """Held for the job's last round trip only while nothing else runs: a worker that opens a
    fork and takes its first branch itself sends the other branches' jobs before running it."""
    settings.RATCHET = {**settings.RATCHET, "INLINE_CHAIN_LIMIT": 200}
    from orchestrator.engine import executor
    from orchestrator.engine.dispatch import held_dispatches
    from orchestrator.engine.workflows import publish

    publish({"name": "held", "start_at": "first", "states": {
        "first": task("demo.noop", next="fan"),
        "fan": {"type": "parallel", "end": True, "branches": {
            name: {"start_at": f"{name}_step", "states": {f"{name}_step": task("demo.noop", end=True)}}
            for name in ("a", "b", "c")}}}})
    run, _ = start_run("held")
    queue = Queue("default", connection=redis_conn)
    queue.empty()
    queued_at_each_step: list[tuple[str, int]] = []
    execute = executor.execute

    def recording(claim, claimant, lost):
        queued_at_each_step.append((claim.attempt.state_name, queue.count))
        return execute(claim, claimant, lost)

    monkeypatch.setattr(executor, "execute", recording)
    with held_dispatches() as held:
        executor.run_attempt(run.attempts.get(state_name="first").pk)
    assert queued_at_each_step[0] == ("first", 0)
    assert queued_at_each_step[1] == ("a_step", 2)  # b's and c's jobs were sent before a ran
    assert held == []
