from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator.loadgen import load_history
from orchestrator.models import Run


class Command(BaseCommand):
    help = (
        "Load a synthetic history of demo-workflow runs (attempts, events, effects) spread over the last days, "
        "to see and measure the pages at scale (see orchestrator/loadgen.py). Publishes the demo workflows first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=100_000, help="runs to add (default 100,000)")
        parser.add_argument("--events-per-run", type=float, default=10,
                            help="mean events per run; steers the workflow mix (default 10)")
        parser.add_argument("--days", type=float, default=30, help="spread the runs over the last N days")
        parser.add_argument("--seed", type=int, default=1, help="same seed, same history (relative to now)")
        parser.add_argument("--append", action="store_true", help="add to a database that already has runs")
        parser.add_argument("--batch", type=int, default=2000, help="runs written per transaction")

    def handle(self, *args: Any, runs: int, events_per_run: float, days: float, seed: int, append: bool,
               batch: int, **options: Any) -> None:
        if runs < 1 or batch < 1:
            raise CommandError("--runs and --batch must be at least 1")
        if events_per_run <= 0 or days <= 0:
            raise CommandError("--events-per-run and --days must be positive")
        existing = Run.objects.count()
        if existing and not append:
            raise CommandError(
                f"the database already holds {existing:,} runs; pass --append to add {runs:,} more to them, "
                "or point DATABASE_URL at an empty database")
        try:
            report = load_history(runs, events_per_run=events_per_run, days=days, seed=seed, batch_runs=batch,
                                  stream=sys.stderr if options.get("verbosity", 1) else None)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(report.line())
