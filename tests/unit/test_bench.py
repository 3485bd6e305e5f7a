"""``manage.py bench``: the interleaved rounds, the summary lines, and the LangGraph side and
the commit floor at a tiny size against the test PostgreSQL server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.bench_rounds import Figures, median, round_order, round_table, run_rounds, summary_lines
from orchestrator.benchmark import DEFAULT_REDIS_URL, bench_redis_url

FIGURES = Figures(engine_steps_per_s=310.54, step_overhead_ms_p50=4.851, engine_per_job_steps_per_s=151.66,
                  bare_rq_jobs_per_s=393.1, commit_floor_steps_per_s=3978.94, langgraph_steps_per_s=1038.0,
                  fanout_branches=100, fanout_ms_p50=180.94, langgraph_fanout_ms_p50=20.66)


def test_each_round_measures_every_system_once_starting_one_further() -> None:
    assert round_order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert round_order(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert round_order(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_run_rounds_interleaves_and_keeps_each_systems_results_in_round_order() -> None:
    calls: list[str] = []
    counters = {"a": iter([1, 2, 3]), "b": iter([10, 20, 30])}

    def measure(name: str) -> Any:
        return lambda: calls.append(name) or next(counters[name])

    lines: list[str] = []
    results = run_rounds({"a": measure("a"), "b": measure("b")}, 3, lines.append)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert results == {"a": [1, 2, 3], "b": [10, 20, 30]}
    assert lines[1] == "round 1/3, system 2/2: b" and len(lines) == 6


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_summary_lines_are_exactly_the_four_lines_of_the_issue() -> None:
    assert summary_lines(FIGURES) == [
        "bench: engine_steps_per_s=310.5 bare_rq_jobs_per_s=393.1 ratio=0.79 step_overhead_ms_p50=4.85",
        "bench: engine_per_job_steps_per_s=151.7 bare_rq_jobs_per_s=393.1 ratio_per_job=0.39",
        "bench: langgraph_steps_per_s=1038.0 ratio_vs_langgraph=0.30 commit_floor_steps_per_s=3978.9",
        "bench: fanout_100_ms_p50=180.9 langgraph_fanout_100_ms_p50=20.7",
    ]


def test_skipped_langgraph_reads_n_a_and_a_skipped_fanout_prints_no_line() -> None:
    lines = summary_lines(Figures(engine_steps_per_s=300, step_overhead_ms_p50=5, engine_per_job_steps_per_s=150,
                                  bare_rq_jobs_per_s=400, commit_floor_steps_per_s=4000))
    assert lines[2] == "bench: langgraph_steps_per_s=n/a ratio_vs_langgraph=n/a commit_floor_steps_per_s=4000.0"
    assert len(lines) == 3


def test_round_table_shows_each_round_and_the_median() -> None:
    assert round_table({"engine": [300.0, 320.0, 310.0]}) == ["engine: 300.0 320.0 310.0 -> median 310.0"]


def test_bench_redis_is_the_bench_url_then_redis_url_then_db_3() -> None:
    assert bench_redis_url({"RATCHET_BENCH_REDIS_URL": "redis://h/5", "REDIS_URL": "redis://h/9"}) == "redis://h/5"
    assert bench_redis_url({"REDIS_URL": "redis://h/9"}) == "redis://h/9"
    assert bench_redis_url({}) == DEFAULT_REDIS_URL


@pytest.fixture
def side_database() -> Iterator[dict[str, Any]]:
    """A scratch database on the test PostgreSQL server, dropped afterwards."""
    from django.db import connection

    from orchestrator.benchmark import conninfo

    if connection.vendor != "postgresql":
        pytest.skip("the bench measures PostgreSQL")
    params = connection.settings_dict
    database = conninfo(params, f"{params['NAME']}_bench_test")
    yield database
    import psycopg

    with psycopg.connect(**conninfo(params, "postgres"), autocommit=True) as maintenance:
        maintenance.execute(f'DROP DATABASE IF EXISTS "{database["dbname"]}" WITH (FORCE)')


def test_langgraph_side_and_commit_floor_at_a_tiny_size(side_database: dict[str, Any]) -> None:
    pytest.importorskip("langgraph.checkpoint.postgres")
    from orchestrator import bench_langgraph
    from orchestrator.bench_floor import measure_commit_floor

    lines: list[str] = []
    bench_langgraph.prepare_database(side_database, lines.append)
    chain = bench_langgraph.measure_chain(4, 2, side_database, lines.append)
    assert chain.steps == 4 * bench_langgraph.CHAIN_NODES
    assert chain.checkpoints >= chain.steps  # sync durability: a checkpoint per super-step, in PostgreSQL
    assert chain.seconds > 0 and chain.node_ms_p50_serial > 0
    with pytest.raises(RuntimeError, match="durability is not what it claims"):
        bench_langgraph._check_checkpoints(side_database, threads=5, per_thread=1)
    timings = bench_langgraph.measure_fanout(5, 2, side_database, lines.append)
    assert len(timings) == 2 and min(timings) > 0
    floor = measure_commit_floor(20, 2, side_database, lines.append)
    assert floor.done == 20 and floor.seconds > 0
    assert "langgraph: 2 executor process(es) ready" in lines


@pytest.mark.django_db(transaction=True)
def test_bench_step_prints_the_cost_of_a_step_down_each_path(redis_conn) -> None:
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the benchmarks measure PostgreSQL")
    out = io.StringIO()
    call_command("bench_step", steps=4, rounds=1, stdout=out, stderr=io.StringIO())
    wall, split = out.getvalue().strip().splitlines()
    figures = dict(part.split("=") for part in wall.removeprefix("bench: ").split())
    assert set(figures) == {"step_ms_fast", "step_ms_general", "step_ms_per_job", "steps", "rounds"}
    assert all(float(figures[kind]) > 0 for kind in ("step_ms_fast", "step_ms_general", "step_ms_per_job"))
    cpu = dict(part.split("=") for part in split.removeprefix("bench: ").split())
    kinds = ("fast", "general", "per_job")
    assert set(cpu) == {f"step_cpu_ms_{kind}_{side}" for kind in kinds for side in ("python", "postgres")}
    for kind in kinds:  # the server is on this machine, so it is seen (its CPU counts in 10 ms ticks)
        assert 0 < float(cpu[f"step_cpu_ms_{kind}_python"]) < float(figures[f"step_ms_{kind}"]) * 2
        assert float(cpu[f"step_cpu_ms_{kind}_postgres"]) >= 0
