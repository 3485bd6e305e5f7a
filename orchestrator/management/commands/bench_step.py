"""``manage.py bench_step``: what one durable step costs, in this process, without workers.

A chain of ``--steps`` no-op steps run inline by ``run_attempt`` (the worker's own entry point),
with the one-statement checkpoint and with the general transaction, alternately for
``--rounds`` rounds; then the same chain one job per step (``INLINE_CHAIN_LIMIT=1``: each step
claimed, run and checkpointed on its own, its successor enqueued on Redis). Prints the median
milliseconds per step, then where they go: this process's CPU and the PostgreSQL server's CPU
per step (the rest is waiting on round trips and the commit's flush). No RQ worker runs: the
figures are the engine's own cost per step, the profile behind ``manage.py bench``'s
step_overhead_ms_p50.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings

from orchestrator.benchmark import prepare_database
from orchestrator.engine import clock
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Run

WORKFLOW = "bench_step_chain"


class Command(BaseCommand):
    help = "Milliseconds per durable step in this process: one-statement checkpoint, general path, one job per step."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--steps", type=int, default=200, help="steps of the chain")
        parser.add_argument("--rounds", type=int, default=3, help="runs of each kind, alternating")

    def handle(self, *args: Any, steps: int, rounds: int, **options: Any) -> None:
        if steps < 2 or rounds < 1:
            raise CommandError("--steps must be at least 2 and --rounds at least 1")
        prepare_database(lambda line: self.stderr.write(line))
        states = {f"s{i}": {"type": "task", "handler": "demo.noop", "next": f"s{i + 1}"} for i in range(steps)}
        states[f"s{steps - 1}"] = {"type": "task", "handler": "demo.noop", "end": True}
        publish({"name": WORKFLOW, "start_at": "s0", "states": states})
        Run.objects.filter(workflow__name=WORKFLOW).delete()
        clock.sync()
        timings: dict[str, list[tuple[float, float, float | None]]] = {"fast": [], "general": [], "per_job": []}
        for round_number in range(rounds):
            for kind in timings:
                timings[kind].append(self.measure(kind, steps))
            self.stderr.write(f"round {round_number + 1}/{rounds}: " + " ".join(
                f"{kind}={values[-1][0]:.2f}ms" for kind, values in timings.items()))
        Run.objects.filter(workflow__name=WORKFLOW).delete()
        self.stdout.write("bench: " + " ".join(
            f"step_ms_{kind}={statistics.median(v[0] for v in values):.2f}" for kind, values in timings.items())
            + f" steps={steps} rounds={rounds}")
        # Where a step's milliseconds go: this process (the engine's Python, psycopg, redis-py)
        # and the database server; the rest of the wall time is waiting (round trips, fsync).
        split = []
        for kind, values in timings.items():
            split.append(f"step_cpu_ms_{kind}_python={statistics.median(v[1] for v in values):.2f}")
            server = [v[2] for v in values if v[2] is not None]
            split.append(f"step_cpu_ms_{kind}_postgres={statistics.median(server):.2f}" if server
                         else f"step_cpu_ms_{kind}_postgres=n/a")
        self.stdout.write("bench: " + " ".join(split))

    def measure(self, kind: str, steps: int) -> tuple[float, float, float | None]:
        """Per step of one run of the chain, run to its end in this process: milliseconds of wall
        time, of this process's CPU, and of the PostgreSQL server's CPU (None when it runs
        elsewhere)."""
        engine = {**settings.RATCHET, "FAST_CHECKPOINT": kind != "general",
                  "INLINE_CHAIN_LIMIT": 1 if kind == "per_job" else steps + 1}
        with override_settings(RATCHET=engine):
            run, _ = start_run(WORKFLOW)
            elapsed = cpu = 0.0  # in run_attempt only, not in finding the next job
            postgres = PostgresCpu()
            server: float | None = 0.0
            while due := list(run.attempts.filter(status=AttemptStatus.SCHEDULED).values_list("pk", flat=True)):
                for attempt_id in due:
                    server_before, cpu_before, started = postgres.seconds(), time.process_time(), time.perf_counter()
                    run_attempt(attempt_id)
                    elapsed += time.perf_counter() - started
                    cpu += time.process_time() - cpu_before
                    server_after = postgres.seconds()
                    server = None if server is None or server_before is None or server_after is None else (
                        server + server_after - server_before)
        run.refresh_from_db()
        if run.status != "succeeded" or run.attempts.count() != steps:
            raise CommandError(f"the {kind} run ended {run.status} with {run.attempts.count()} attempts")
        return elapsed * 1000 / steps, cpu * 1000 / steps, server * 1000 / steps if server is not None else None


class PostgresCpu:
    """CPU seconds used by the PostgreSQL server's processes on this machine (Linux's /proc; all
    of them, so the WAL writer's share of a commit counts too), found once and then read at each
    call. ``seconds()`` is None when none is seen: the server runs elsewhere."""

    def __init__(self) -> None:
        self.stats = [stat for stat in Path("/proc").glob("[0-9]*/stat") if self._postgres(stat)]

    @staticmethod
    def _postgres(stat: Path) -> bool:
        try:
            return stat.read_text().partition(" (")[2].partition(") ")[0] in ("postgres", "postmaster")
        except OSError:
            return False

    def seconds(self) -> float | None:
        ticks = 0
        for stat in self.stats:
            try:
                fields = stat.read_text().rpartition(") ")[2].split()
            except OSError:
                continue  # a backend that ended meanwhile
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK") if self.stats else None
