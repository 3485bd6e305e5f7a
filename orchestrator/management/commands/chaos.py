import signal
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand

from orchestrator.chaos import WORKLOADS, ChaosOptions, run_chaos


class Command(BaseCommand):
    help = ("Start N demo pipeline runs on W real workers; SIGKILL a random worker every few seconds, SIGSTOP "
            "one for longer than its lease (a zombie), flush Redis; decide paused runs as an operator would; "
            "then compare what the sink received with what the engine reports. Exits 1 on a lost run, a failed "
            "run, or a duplicate the engine did not report.")

    def add_arguments(self, parser):
        parser.add_argument("--workflow", choices=sorted(WORKLOADS), default="order_fulfilment",
                            help="the demo to run: the order pipeline, or the supervisor/worker research")
        parser.add_argument("--runs", type=int, default=200)
        parser.add_argument("--workers", type=int, default=3)
        parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between SIGKILLs")
        parser.add_argument("--pause-every", type=float, default=None,
                            help="seconds between SIGSTOPs of a worker (each frozen for longer than a lease)")
        parser.add_argument("--flush-redis-every", type=float, default=None, help="seconds between Redis flushes")
        parser.add_argument("--strict", action="store_true",
                            help="the sink deduplicates nothing, so every duplicate delivery is counted")
        parser.add_argument("--timeout", type=float, default=900, help="give up waiting after this many seconds")
        parser.add_argument("--pack-seconds", type=float, default=0.5, help="length of the slow, heartbeating step")
        parser.add_argument("--effect-seconds", type=float, default=0.2,
                            help="how long each side effect takes (half before the delivery, half after)")

    def handle(self, workflow, runs, workers, kill_every, pause_every, flush_redis_every, strict, timeout, pack_seconds,
               effect_seconds, **options):
        # Stopped from outside (a CI timeout): unwind, so the workers it started are stopped and
        # thawed, not left frozen holding locks.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        call_command("load_demo", stdout=self.stderr)
        options = ChaosOptions(workflow=workflow, runs=runs, workers=workers, kill_every=kill_every,
                               flush_every=flush_redis_every, pause_every=pause_every, strict=strict,
                               timeout=timeout, pack_seconds=pack_seconds, effect_seconds=effect_seconds)
        result = run_chaos(options, say=lambda line: self.stdout.write(line))
        self.stdout.write(result.details())
        self.stdout.write(result.summary())
        if not result.passed:
            sys.exit(1)
