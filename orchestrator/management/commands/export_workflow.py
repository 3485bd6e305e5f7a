from django.core.management.base import BaseCommand, CommandError

from orchestrator.engine.errors import WorkflowNotFound
from orchestrator.engine.workflows import export


class Command(BaseCommand):
    help = "Print a workflow's definition (latest version, or --number N) as YAML or JSON."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
        # Not --version: every Django command already has that flag (Django's version).
        parser.add_argument("--number", dest="version", type=int, default=None, help="a version number")

    def handle(self, name, format, version, **options):
        try:
            self.stdout.write(export(name, format, version), ending="")
        except WorkflowNotFound as exc:
            raise CommandError(str(exc)) from exc
