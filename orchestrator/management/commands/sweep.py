from django.core.management.base import BaseCommand

from orchestrator.engine.sweeper import sweep


class Command(BaseCommand):
    help = "Run the recovery sweeper once (workers already run it on a schedule)."

    def handle(self, **options):
        report = sweep()
        self.stdout.write(
            f"resumed={report.resumed} timed_out={report.timed_out} "
            f"redispatched={report.redispatched} runs_timed_out={report.runs_timed_out} unserved={report.unserved}"
        )
