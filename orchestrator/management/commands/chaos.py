import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand

from orchestrator.chaos import run_chaos


class Command(BaseCommand):
    help = ("Start N demo pipeline runs on W real workers, SIGKILL a random worker every few seconds "
            "(and flush Redis), then check the sink for duplicate effects and the database for lost runs.")

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=200)
        parser.add_argument("--workers", type=int, default=3)
        parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between SIGKILLs")
        parser.add_argument("--flush-redis-every", type=float, default=None, help="seconds between Redis flushes")
        parser.add_argument("--timeout", type=float, default=900, help="give up waiting after this many seconds")
        parser.add_argument("--pack-seconds", type=float, default=0.5, help="length of the slow, heartbeating step")

    def handle(self, runs, workers, kill_every, flush_redis_every, timeout, pack_seconds, **options):
        call_command("load_demo", stdout=self.stderr)
        result = run_chaos(runs, workers, kill_every, flush_redis_every, timeout, pack_seconds,
                           say=lambda line: self.stdout.write(line))
        self.stdout.write(
            f"chaos: kills={result.kills} redis_flushes={result.flushes} missing_effects={result.missing_effects} "
            f"ledger_reexecutions={result.ledger_reexecutions} ledger_dedup_hits={result.dedup_hits}"
        )
        self.stdout.write(result.summary())
        if not result.passed:
            sys.exit(1)
