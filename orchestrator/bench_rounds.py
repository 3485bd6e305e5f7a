"""Interleaved rounds and the summary lines of ``manage.py bench`` (pure functions).

Each round measures every system once; the order rotates from one round to the next (round
2 starts with the second system), so no system always runs first on a cold cache or last on a
warm one. Each figure reported is the median of its per-round values, taken independently
(the engine's step overhead is the median of the rounds' p50s, not the p50 of the round
whose throughput was the median).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Progress = Callable[[str], None]


def round_order(systems: Sequence[str], index: int) -> list[str]:
    """The systems in the order round ``index`` (from 0) measures them."""
    shift = index % len(systems) if systems else 0
    return [*systems[shift:], *systems[:shift]]


def run_rounds(measures: Mapping[str, Callable[[], T]], rounds: int, progress: Progress) -> dict[str, list[T]]:
    """Call every measure once per round, in ``round_order``; each system's results in round order."""
    results: dict[str, list[T]] = {name: [] for name in measures}
    for index in range(rounds):
        order = round_order(list(measures), index)
        for position, name in enumerate(order, start=1):
            progress(f"round {index + 1}/{rounds}, system {position}/{len(order)}: {name}")
            results[name].append(measures[name]())
    return results


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class Figures:
    """The medians the last lines report; None for a system that was skipped."""

    engine_steps_per_s: float
    step_overhead_ms_p50: float
    engine_per_job_steps_per_s: float
    bare_rq_jobs_per_s: float
    commit_floor_steps_per_s: float
    langgraph_steps_per_s: float | None = None
    fanout_branches: int = 100
    fanout_ms_p50: float | None = None
    langgraph_fanout_ms_p50: float | None = None


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def engine_line(engine_steps_per_s: float, bare_rq_jobs_per_s: float, step_overhead_ms_p50: float) -> str:
    """The first line, formatted as it always was."""
    return (f"bench: engine_steps_per_s={engine_steps_per_s:.1f} bare_rq_jobs_per_s={bare_rq_jobs_per_s:.1f} "
            f"ratio={engine_steps_per_s / bare_rq_jobs_per_s:.2f} step_overhead_ms_p50={step_overhead_ms_p50:.2f}")


def summary_lines(figures: Figures) -> list[str]:
    """The last lines of ``manage.py bench`` (the fan-out line only when the fan-out ran)."""
    f = figures
    langgraph_ratio = None if f.langgraph_steps_per_s is None else f.engine_steps_per_s / f.langgraph_steps_per_s
    lines = [
        engine_line(f.engine_steps_per_s, f.bare_rq_jobs_per_s, f.step_overhead_ms_p50),
        f"bench: engine_per_job_steps_per_s={f.engine_per_job_steps_per_s:.1f} "
        f"bare_rq_jobs_per_s={f.bare_rq_jobs_per_s:.1f} "
        f"ratio_per_job={f.engine_per_job_steps_per_s / f.bare_rq_jobs_per_s:.2f}",
        f"bench: langgraph_steps_per_s={_number(f.langgraph_steps_per_s)} "
        f"ratio_vs_langgraph={_number(langgraph_ratio, 2)} commit_floor_steps_per_s={f.commit_floor_steps_per_s:.1f}",
    ]
    if f.fanout_ms_p50 is not None:
        lines.append(f"bench: fanout_{f.fanout_branches}_ms_p50={f.fanout_ms_p50:.1f} "
                     f"langgraph_fanout_{f.fanout_branches}_ms_p50={_number(f.langgraph_fanout_ms_p50)}")
    return lines


def round_table(rates: Mapping[str, Sequence[float]]) -> list[str]:
    """One line per system: its value in each round and the median, for reading the spread."""
    return [f"{name}: " + " ".join(f"{value:.1f}" for value in values) + f" -> median {median(values):.1f}"
            for name, values in rates.items()]
