"""``manage.py bench_step``: what one durable step costs, in this process, without workers.

A chain of ``--steps`` no-op steps run inline by ``run_attempt`` (the worker's own entry point),
with the one-statement checkpoint and with the general transaction, alternately for
``--rounds`` rounds; then the same chain one job per step (``INLINE_CHAIN_LIMIT=1``: each step
claimed, run and checkpointed on its own, its successor enqueued on Redis). Prints the median
milliseconds per step. No RQ worker runs: the figures are the engine's own cost per step, the
profile behind ``manage.py bench``'s step_overhead_ms_p50.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings

from orchestrator.benchmark import prepare_database
from orchestrator.engine import clock
from orchestrator.engine.executor import run_attempt
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Run

WORKFLOW = "bench_step_chain"


class Command(BaseCommand):
    help = "Milliseconds per durable step in this process: one-statement checkpoint, general path, one job per step."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--steps", type=int, default=200, help="steps of the chain")
        parser.add_argument("--rounds", type=int, default=3, help="runs of each kind, alternating")

    def handle(self, *args: Any, steps: int, rounds: int, **options: Any) -> None:
        if steps < 2 or rounds < 1:
            raise CommandError("--steps must be at least 2 and --rounds at least 1")
        prepare_database(lambda line: self.stderr.write(line))
        states = {f"s{i}": {"type": "task", "handler": "demo.noop", "next": f"s{i + 1}"} for i in range(steps)}
        states[f"s{steps - 1}"] = {"type": "task", "handler": "demo.noop", "end": True}
        publish({"name": WORKFLOW, "start_at": "s0", "states": states})
        Run.objects.filter(workflow__name=WORKFLOW).delete()
        clock.sync()
        timings: dict[str, list[float]] = {"fast": [], "general": [], "per_job": []}
        for round_number in range(rounds):
            for kind in timings:
                timings[kind].append(self.measure(kind, steps))
            self.stderr.write(f"round {round_number + 1}/{rounds}: " + " ".join(
                f"{kind}={values[-1]:.2f}ms" for kind, values in timings.items()))
        Run.objects.filter(workflow__name=WORKFLOW).delete()
        self.stdout.write("bench: " + " ".join(
            f"step_ms_{kind}={statistics.median(values):.2f}" for kind, values in timings.items())
            + f" steps={steps} rounds={rounds}")

    def measure(self, kind: str, steps: int) -> float:
        """Milliseconds per step of one run of the chain, run to its end in this process."""
        engine = {**settings.RATCHET, "FAST_CHECKPOINT": kind != "general",
                  "INLINE_CHAIN_LIMIT": 1 if kind == "per_job" else steps + 1}
        with override_settings(RATCHET=engine):
            run, _ = start_run(WORKFLOW)
            elapsed = 0.0  # in run_attempt only, not in finding the next job
            while due := list(run.attempts.filter(status=AttemptStatus.SCHEDULED).values_list("pk", flat=True)):
                for attempt_id in due:
                    started = time.perf_counter()
                    run_attempt(attempt_id)
                    elapsed += time.perf_counter() - started
        run.refresh_from_db()
        if run.status != "succeeded" or run.attempts.count() != steps:
            raise CommandError(f"the {kind} run ended {run.status} with {run.attempts.count()} attempts")
        return elapsed * 1000 / steps
