"""The PostgreSQL commit floor: what one durable write per step costs on this server, with
nothing else (``manage.py bench``'s ``commit_floor_steps_per_s``).

``executors`` processes, each with its own connection to the engine's database, each insert
a small row and COMMIT it, ``steps / executors`` times; the clock starts when they are
released together and stops when the last one has committed its last row (bench_procs.py).
A durable step of any engine costs at least one such commit, so no engine can beat this
figure with the same number of connections. The rows are counted afterwards: a figure from
commits that did not land is refused.

Nothing at module level needs Django (the executors import this module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .bench_procs import ParallelResult, Progress, Tick, run_parallel

TABLE = "bench_commit_floor"
CREATE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY, executor integer NOT NULL, step integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)"""
INSERT = f"INSERT INTO {TABLE} (executor, step, payload) VALUES (%s, %s, %s)"


def measure_commit_floor(steps: int, executors: int, conninfo: dict[str, Any], progress: Progress) -> ParallelResult:
    """Commit ``steps`` single-row transactions on ``executors`` connections; commits/s."""
    import psycopg

    with psycopg.connect(**conninfo, autocommit=True) as connection:
        connection.execute(CREATE)
        connection.execute(f"TRUNCATE {TABLE}")
    shares = [steps // executors + (1 if i < steps % executors else 0) for i in range(executors)]
    kwargs = [{"conninfo": conninfo, "executor": i, "steps": n} for i, n in enumerate(shares)]
    result = run_parallel(f"{__name__}:prepare_executor", kwargs, "floor", "commits", steps,
                          timeout=60 + steps * 0.05, progress=progress)
    with psycopg.connect(**conninfo, autocommit=True) as connection:
        landed = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    if landed != steps or result.done != steps:
        raise RuntimeError(f"commit floor: {result.done} commits reported, {landed} rows found, {steps} expected")
    return result


def prepare_executor(conninfo: dict[str, Any], executor: int, steps: int) -> Callable[[Tick], int]:
    """Connect (not timed); the returned ``run`` commits ``steps`` rows, one transaction each."""
    import psycopg

    connection = psycopg.connect(**conninfo)
    payload = '{"output": "ok"}'

    def run(tick: Tick) -> int:
        with connection, connection.cursor() as cursor:
            for step in range(steps):
                cursor.execute(INSERT, (executor, step, payload))
                connection.commit()
                if step % 50 == 49:
                    tick(50)
        return steps

    return run
