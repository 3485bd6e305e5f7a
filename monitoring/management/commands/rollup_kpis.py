from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...rollups import catch_up, rebuild


class Command(BaseCommand):
    help = (
        "Roll the KPIs of every closed hour up now (workers' sweeps do it as hours close; see "
        "monitoring/rollups.py). --rebuild forgets the rollups first, after history was loaded or deleted by hand."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="forget every rollup and roll all hours up again")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        hours = rebuild() if options["rebuild"] else catch_up()
        self.stdout.write(f"rolled up {hours:,} hour(s) of KPIs in {time.monotonic() - started:.1f}s")
