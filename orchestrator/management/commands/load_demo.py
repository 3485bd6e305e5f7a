from django.core.management.base import BaseCommand

from orchestrator.demo import WORKFLOWS_DIR
from orchestrator.engine.workflows import import_file


class Command(BaseCommand):
    help = "Load or update every demo workflow (safe to run again: unchanged ones stay as they are)."

    def handle(self, **options):
        for path in sorted(WORKFLOWS_DIR.glob("*.y*ml")):
            version, created = import_file(path)
            state = "published" if created else "up to date at"
            self.stdout.write(f"{version.workflow.name}: {state} version {version.number}")
