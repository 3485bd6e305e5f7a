import json

from django.core.management.base import BaseCommand, CommandError

from orchestrator.engine.errors import RatchetError
from orchestrator.engine.runs import start_run


class Command(BaseCommand):
    help = "Start a run of a workflow's latest published version."

    def add_arguments(self, parser):
        parser.add_argument("workflow")
        parser.add_argument("--input", default="{}", help="the run's input, as JSON")
        parser.add_argument("--idempotency-key", default=None, help="a repeated key returns the same run")
        parser.add_argument("--count", type=int, default=1,
                            help="start this many runs at once, with the same input (to drive a demo: rate "
                                 "limits and circuit breakers show under load)")

    def handle(self, workflow, input, idempotency_key, count, **options):
        try:
            data = json.loads(input)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--input is not valid JSON: {exc}") from exc
        if count < 1 or (count > 1 and idempotency_key):
            raise CommandError("--count must be at least 1, and a repeated --idempotency-key starts one run only")
        for _ in range(count):
            try:
                run, created = start_run(workflow, data, idempotency_key=idempotency_key)
            except RatchetError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{'started' if created else 'existing'} run {run.id} ({run.status})")
