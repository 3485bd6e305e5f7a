from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from orchestrator.benchmark import prepare_database
from orchestrator.loadgen import load_history
from orchestrator.models import Run

from ...pagebench import measure_pages, summary_lines
from ...rollups import catch_up


class Command(BaseCommand):
    help = (
        "Time the monitoring pages (KPI dashboard, runs list, run detail, failures) on a large history, on "
        "PostgreSQL (see monitoring/pagebench.py). Loads the history first when the database holds fewer runs "
        "than --runs: point DATABASE_URL at a database of its own (make bench uses ratchet_pages_bench)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=100_000, help="runs the history must hold (default 100,000)")
        parser.add_argument("--events-per-run", type=float, default=10, help="when loading: mean events per run")
        parser.add_argument("--days", type=float, default=30, help="when loading: spread over the last N days")
        parser.add_argument("--seed", type=int, default=1, help="when loading: the history's seed")
        parser.add_argument("--repeats", type=int, default=15, help="timed requests per page")
        parser.add_argument("--warmups", type=int, default=2, help="untimed requests per page first")
        parser.add_argument("--no-migrate", action="store_true",
                            help="use the database as it is (do not create or migrate it)")

    def handle(self, *args: Any, runs: int, events_per_run: float, days: float, seed: int, repeats: int,
               warmups: int, no_migrate: bool, **options: Any) -> None:
        if runs < 1 or repeats < 1 or warmups < 0:
            raise CommandError("--runs and --repeats must be at least 1, --warmups at least 0")
        if connection.vendor != "postgresql":
            raise CommandError("the page benchmark measures PostgreSQL: set DATABASE_URL=postgres://... "
                               "(make bench does)")
        try:
            if not no_migrate:
                prepare_database(self.progress)
            existing = Run.objects.count()
            if existing < runs:
                self.progress(f"the database holds {existing:,} runs: loading {runs - existing:,} more")
                report = load_history(runs - existing, events_per_run=events_per_run, days=days,
                                      seed=seed, stream=sys.stderr)
                self.progress(report.line())
            else:
                self.progress(f"the database holds {existing:,} runs: measuring them")
            started = time.monotonic()
            hours = catch_up()  # what the workers' sweeps keep up to date
            self.progress(f"rolled up {hours:,} hours of KPIs in {time.monotonic() - started:.1f}s")
            started = time.monotonic()
            timings = measure_pages(repeats=repeats, warmups=warmups, progress=self.progress)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.progress(f"measured {len(timings)} page variants in {time.monotonic() - started:.1f}s")
        for line in summary_lines(timings):
            self.stdout.write(line)

    def progress(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
