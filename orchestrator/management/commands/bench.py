from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import override_settings

from orchestrator.bench_floor import measure_commit_floor
from orchestrator.bench_rounds import Figures, median, round_table, run_rounds, summary_lines
from orchestrator.benchmark import (
    CHAIN_LENGTH,
    bench_redis_url,
    conninfo,
    measure_bare,
    measure_engine,
    measure_fanout,
    prepare_database,
)
from orchestrator.ratelimit_bench import measure_ratelimit


class Command(BaseCommand):
    help = (
        "Measure, in interleaved rounds, the engine inline and one job per step, bare RQ, LangGraph with its "
        "PostgreSQL checkpointer and the PostgreSQL commit floor (orchestrator/benchmark.py, bench_*.py); then the "
        "fan-out of the engine and of LangGraph, and a rate limit shared by three workers. "
        "Flushes its Redis database and deletes earlier noop_chain runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=200, help="chains of ten steps per system and round")
        parser.add_argument("--workers", type=int, default=2, help="worker processes (executors) of each system")
        parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every system once")
        parser.add_argument("--fanout", type=int, default=100, help="branches of the fan-out run (0: skip it)")
        parser.add_argument("--fanout-repeats", type=int, default=7, help="fan-out runs to time, per system")
        parser.add_argument("--ratelimit", type=float, default=20, help="calls/s of the shared-limit run (0: skip it)")
        parser.add_argument("--ratelimit-calls", type=int, default=200, help="calls of the shared-limit run")
        parser.add_argument("--no-langgraph", action="store_true", help="skip LangGraph (its figures print n/a)")
        parser.add_argument(
            "--redis-url", default=bench_redis_url(),
            help="Redis database to use; it is FLUSHED (default: $RATCHET_BENCH_REDIS_URL, else $REDIS_URL, else db 3)",
        )

    def handle(self, *args: Any, runs: int, workers: int, rounds: int, redis_url: str, fanout: int,
               fanout_repeats: int, ratelimit: float, ratelimit_calls: int, no_langgraph: bool,
               **options: Any) -> None:
        if runs < 1 or workers < 1 or rounds < 1:
            raise CommandError("--runs, --workers and --rounds must be at least 1")
        try:
            if not no_langgraph:
                from orchestrator.bench_langgraph import require_langgraph

                require_langgraph()
            prepare_database(self.progress)
            langgraph = None if no_langgraph else self.langgraph_database()
            results = run_rounds(self.measures(runs, workers, redis_url, langgraph), rounds, self.progress)
            rates = {name: [result.per_s for result in values] for name, values in results.items()}
            for line in round_table(rates):
                self.progress(f"steps/s by round: {line}")
            figures = Figures(
                engine_steps_per_s=median(rates["engine"]),
                step_overhead_ms_p50=median([r.step_overhead_ms_p50 for r in results["engine"]]),
                engine_per_job_steps_per_s=median(rates["engine_per_job"]),
                bare_rq_jobs_per_s=median(rates["bare_rq"]),
                commit_floor_steps_per_s=median(rates["commit_floor"]),
                langgraph_steps_per_s=median(rates["langgraph"]) if langgraph else None,
                fanout_branches=fanout,
            )
            if langgraph:
                serial = median([r.node_ms_p50_serial for r in results["langgraph"]])
                self.progress(f"langgraph: node latency p50, serial: {serial:.2f} ms (engine step overhead p50 "
                              f"under load: {figures.step_overhead_ms_p50:.2f} ms)")
            if fanout:
                figures = self.fanouts(figures, fanout, fanout_repeats, workers, redis_url, langgraph)
            if ratelimit:
                limited = measure_ratelimit(ratelimit, ratelimit_calls, 3, redis_url, self.progress)
                self.stdout.write(limited.line())
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        for line in summary_lines(figures):
            self.stdout.write(line)

    def langgraph_database(self) -> dict[str, Any]:
        """LangGraph's database, on the engine's server, named after the engine's + ``_langgraph``."""
        from orchestrator import bench_langgraph

        params = connection.settings_dict
        database = conninfo(params, f"{params['NAME']}_langgraph")
        bench_langgraph.prepare_database(database, self.progress)
        return database

    def measures(self, runs: int, workers: int, redis_url: str,
                 langgraph: dict[str, Any] | None) -> dict[str, Callable[[], Any]]:
        """One callable per system, each measuring it once and saying what it measured."""
        engine_db = conninfo(connection.settings_dict)

        def engine(per_job: bool) -> Callable[[], Any]:
            def measure() -> Any:
                with override_settings(REDIS_URL=redis_url):
                    result = measure_engine(runs, workers, redis_url, self.progress, per_job=per_job)
                gap = f"step overhead p50 {result.step_overhead_ms_p50:.2f} ms"
                if per_job:
                    gap = gap.replace("step overhead", "step-to-step") + " (mostly waiting behind other runs' jobs)"
                self.progress(f"{'engine/job' if per_job else 'engine'}: {result.steps} steps in "
                              f"{result.seconds:.2f}s = {result.steps_per_s:.1f}/s, {result.rq_jobs} RQ jobs, {gap}")
                return result
            return measure

        def bare() -> Any:
            result = measure_bare(runs, workers, redis_url, self.progress)
            self.progress(f"bare: {result.jobs} jobs in {result.seconds:.2f}s = {result.jobs_per_s:.1f}/s")
            return result

        def floor() -> Any:
            result = measure_commit_floor(runs * CHAIN_LENGTH, workers, engine_db, self.progress)
            self.progress(f"floor: {result.done} commits in {result.seconds:.2f}s = {result.per_s:.1f}/s")
            return result

        measures = {"engine": engine(False), "engine_per_job": engine(True), "bare_rq": bare}
        if langgraph is not None:
            measures["langgraph"] = lambda: self.langgraph_chain(runs, workers, langgraph)
        measures["commit_floor"] = floor
        return measures

    def langgraph_chain(self, runs: int, workers: int, database: dict[str, Any]) -> Any:
        from orchestrator.bench_langgraph import measure_chain

        result = measure_chain(runs, workers, database, self.progress)
        self.progress(f"langgraph: {result.steps} nodes in {result.seconds:.2f}s = {result.steps_per_s:.1f}/s, "
                      f"{result.checkpoints} checkpoints written, node p50 serial {result.node_ms_p50_serial:.2f} ms")
        return result

    def fanouts(self, figures: Figures, branches: int, repeats: int, workers: int, redis_url: str,
                langgraph: dict[str, Any] | None) -> Figures:
        """The engine's fan-out, then LangGraph's; the figures with both p50s."""
        import dataclasses

        with override_settings(REDIS_URL=redis_url):
            spread = measure_fanout(branches, repeats, workers, redis_url, self.progress)
        self.progress(f"fanout: engine p50 {spread.ms_p50:.1f} ms, {spread.ms_p50 / branches:.2f} ms per branch, "
                      f"{repeats} runs")
        graph_ms = None
        if langgraph is not None:
            from orchestrator.bench_langgraph import measure_fanout as measure_graph_fanout

            graph_ms = median(measure_graph_fanout(branches, repeats, langgraph, self.progress))
            self.progress(f"fanout: langgraph p50 {graph_ms:.1f} ms, {repeats} invokes")
        return dataclasses.replace(figures, fanout_ms_p50=spread.ms_p50, langgraph_fanout_ms_p50=graph_ms)

    def progress(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
