from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...bench import measure, summary


class Command(BaseCommand):
    help = "Time the designer's redraw and re-check of a large draft (see designer/bench.py)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--states", type=int, default=60)
        parser.add_argument("--repeats", type=int, default=15)

    def handle(self, *args: Any, states: int, repeats: int, **options: Any) -> None:
        self.stdout.write(summary(measure(repeats, states), states))
