import signal
import time

from django.core.management.base import BaseCommand

from orchestrator.processes import WorkerPool


class Command(BaseCommand):
    help = "Run N worker processes and restart any that dies, until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--queues", nargs="+", default=["default", "slow"])
        parser.add_argument("--fork", action="store_true", help="fork a work horse per job")

    def handle(self, workers, queues, fork, **options):
        pool = WorkerPool(queues=queues, fork=fork)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
        pool.start(workers)
        self.stdout.write(f"{workers} worker(s) on queues {', '.join(queues)}; Ctrl-C stops them")
        try:
            while not stopping:
                for replaced in pool.replace_dead():
                    self.stderr.write(f"worker {replaced} exited; started a replacement")
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            pool.stop()
