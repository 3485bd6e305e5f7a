"""Timed work on several executor processes, for the benchmark's non-RQ systems (LangGraph,
the PostgreSQL commit floor).

Each executor is a fresh ``spawn`` process (nothing inherited from a Django parent: no open
connection, no forked thread). It imports and connects first (``prepare``), then waits at a
start line; the clock starts when the parent releases every executor at once and stops when
the last executor reports that it finished (``time.time()`` of the same machine). Boot,
imports and connecting are not measured, as the RQ workers' boot is not.

Nothing here needs Django.
"""

from __future__ import annotations

import importlib
import multiprocessing
import queue as queue_module
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Progress = Callable[[str], None]
Tick = Callable[[int], None]
READY_SECONDS = 120.0
REPORT_SECONDS = 2.0


@dataclass(frozen=True)
class ParallelResult:
    """Units of work the executors reported (nodes executed, commits) and the wall time."""

    done: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.done / self.seconds


def run_parallel(target: str, kwargs_list: list[dict[str, Any]], label: str, unit: str, expected: int,
                 timeout: float, progress: Progress) -> ParallelResult:
    """Run ``target`` (``"module:function"``) on one process per entry of ``kwargs_list``.

    ``function(**kwargs)`` prepares (imports, connects) and returns ``run(tick) -> int``,
    which does the timed work, calls ``tick(n)`` as it goes (progress only) and returns the
    units it did. ``expected`` is the total the caller asked for, shown in progress lines.
    """
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    counter = context.Value("q", 0)
    processes = [context.Process(target=_executor, args=(target, kwargs, ready, go, counter, results), daemon=True)
                 for kwargs in kwargs_list]
    for process in processes:
        process.start()
    try:
        _collect(ready, len(processes), processes, READY_SECONDS, f"{label}: executors did not get ready")
        progress(f"{label}: {len(processes)} executor process(es) ready")
        started = time.time()
        go.set()
        reports = _collect(results, len(processes), processes, timeout, f"{label}: executors did not finish",
                           lambda: progress(f"{label}: {counter.value}/{expected} {unit} done "
                                            f"({time.time() - started:.1f}s)"))
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    return ParallelResult(done=sum(done for done, _ in reports), seconds=max(end for _, end in reports) - started)


def _collect(channel: Any, count: int, processes: list[Any], timeout: float, failure: str,
             report: Callable[[], None] | None = None) -> list[Any]:
    """``count`` messages from the executors; an executor's exception is raised here."""
    received: list[Any] = []
    limit, next_report = time.monotonic() + timeout, time.monotonic() + REPORT_SECONDS
    while len(received) < count:
        try:
            message = channel.get(timeout=0.05)
        except queue_module.Empty:
            if time.monotonic() > limit:
                raise RuntimeError(f"{failure} within {timeout:.0f}s") from None
            if not all(p.is_alive() or p.exitcode == 0 for p in processes):
                raise RuntimeError(f"{failure}: an executor process died") from None
            if report is not None and time.monotonic() > next_report:
                report()
                next_report += REPORT_SECONDS
            continue
        if isinstance(message, tuple) and message[0] == "error":
            raise RuntimeError(f"{failure}: {message[1]}")
        received.append(message)
    return received


def _executor(target: str, kwargs: dict[str, Any], ready: Any, go: Any, counter: Any, results: Any) -> None:
    try:
        module, _, name = target.partition(":")
        run = getattr(importlib.import_module(module), name)(**kwargs)
    except Exception:
        ready.put(("error", traceback.format_exc()))
        return
    ready.put("ready")
    go.wait()

    def tick(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        done = run(tick)
    except Exception:
        results.put(("error", traceback.format_exc()))
        return
    results.put((done, time.time()))
