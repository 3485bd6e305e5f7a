from django.core.management.base import BaseCommand, CommandError

from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.workflows import import_file


class Command(BaseCommand):
    help = "Validate a workflow definition (YAML or JSON) and publish it as a new version."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, file, **options):
        try:
            version, created = import_file(file)
        except FileNotFoundError as exc:
            raise CommandError(f"no such file: {file}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        except DefinitionError as exc:
            lines = "\n".join(f"  - {finding}" for finding in exc.findings)
            raise CommandError(f"{file} is not a valid definition:\n{lines}") from exc
        verb = "published" if created else "unchanged, already published as"
        self.stdout.write(f"{version.workflow.name}: {verb} version {version.number}")
