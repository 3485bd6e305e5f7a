from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings

from orchestrator.benchmark import (
    DEFAULT_REDIS_URL,
    measure_bare,
    measure_engine,
    measure_fanout,
    prepare_database,
    summary_line,
)
from orchestrator.ratelimit_bench import measure_ratelimit


class Command(BaseCommand):
    help = (
        "Measure engine steps/s against bare RQ jobs/s on PostgreSQL (see orchestrator/benchmark.py), the fan-out, "
        "and a rate limit shared by three workers (orchestrator/ratelimit_bench.py). "
        "Flushes its Redis database and deletes earlier noop_chain runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=200, help="chains of ten steps on each side")
        parser.add_argument("--workers", type=int, default=2, help="worker processes on each side")
        parser.add_argument("--fanout", type=int, default=100, help="branches of the fan-out run (0: skip it)")
        parser.add_argument("--fanout-repeats", type=int, default=7, help="fan-out runs to time")
        parser.add_argument("--ratelimit", type=float, default=20, help="calls/s of the shared-limit run (0: skip it)")
        parser.add_argument("--ratelimit-calls", type=int, default=200, help="calls of the shared-limit run")
        parser.add_argument(
            "--redis-url", default=os.environ.get("RATCHET_BENCH_REDIS_URL", DEFAULT_REDIS_URL),
            help="Redis database to use; it is FLUSHED (default: $RATCHET_BENCH_REDIS_URL or db 3)",
        )

    def handle(self, *args: Any, runs: int, workers: int, redis_url: str, fanout: int, fanout_repeats: int,
               ratelimit: float, ratelimit_calls: int, **options: Any) -> None:
        if runs < 1 or workers < 1:
            raise CommandError("--runs and --workers must be at least 1")
        try:
            prepare_database(self.progress)
            with override_settings(REDIS_URL=redis_url):
                engine = measure_engine(runs, workers, redis_url, self.progress)
            self.progress(f"engine: {engine.steps} steps in {engine.seconds:.2f}s")
            bare = measure_bare(runs, workers, redis_url, self.progress)
            self.progress(f"bare: {bare.jobs} jobs in {bare.seconds:.2f}s")
            if fanout:
                with override_settings(REDIS_URL=redis_url):
                    spread = measure_fanout(fanout, fanout_repeats, workers, redis_url, self.progress)
            if ratelimit:
                limited = measure_ratelimit(ratelimit, ratelimit_calls, 3, redis_url, self.progress)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary_line(engine, bare))
        if fanout:
            self.stdout.write(spread.line())
        if ratelimit:
            self.stdout.write(limited.line())

    def progress(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
