import signal
import time

from django.core.management.base import BaseCommand, CommandError

from orchestrator.processes import WorkerPools, parse_pools


class Command(BaseCommand):
    help = ("Run worker processes and restart any that dies, until interrupted: N workers on the "
            "given queues, or pools with their own workers per queue (--pools default=4 slow=1).")

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--queues", nargs="+", default=["default", "slow"])
        parser.add_argument("--pools", nargs="+", default=None, metavar="QUEUE=N",
                            help="one pool of N workers per queue (bulkheads); replaces --workers and --queues")
        parser.add_argument("--fork", action="store_true", help="fork a work horse per job")

    def handle(self, workers, queues, pools, fork, **options):
        try:
            layout = parse_pools(pools) if pools else [(queues, workers)]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        supervisor = WorkerPools(layout)
        for pool, _ in supervisor.pools:
            pool.fork = fork
        stopping = []
        signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
        supervisor.start()
        self.stdout.write(f"workers: {supervisor.describe()}; Ctrl-C stops them")
        try:
            while not stopping:
                for replaced in supervisor.replace_dead():
                    self.stderr.write(f"worker {replaced} exited; started a replacement")
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            supervisor.stop()
