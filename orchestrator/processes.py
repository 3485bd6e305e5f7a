"""Child processes started and supervised from Python: workers (run_workers, chaos, bench,
tests, make run), the web server and Redis of make run. Nothing here needs Django, so the
benchmark's bare RQ workers can import what imports this."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

MANAGE = str(Path(__file__).resolve().parent.parent / "manage.py")


def stop_process(process: subprocess.Popen, timeout: float = 10, group: bool = False) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds.

    ``group``: signal the process group the process leads (started with start_new_session),
    so children it forked go too.
    """
    if process.poll() is None:
        _signal(process, signal.SIGTERM, group)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL, group)
            process.wait()


def _signal(process: subprocess.Popen, signum: int, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except ProcessLookupError:
        pass


class WorkerPool:
    """``manage.py run_worker`` processes, each leading its own process group."""

    def __init__(self, queues: list[str] | None = None, fork: bool = False, env: dict[str, str] | None = None):
        self.queues = queues or ["default", "slow"]
        self.fork = fork
        self.env = {**os.environ, **(env or {})}
        self.processes: list[subprocess.Popen] = []

    def spawn(self) -> subprocess.Popen:
        command = [sys.executable, MANAGE, "run_worker", "--queues", *self.queues]
        if self.fork:
            command.append("--fork")
        process = subprocess.Popen(command, env=self.env, start_new_session=True)
        self.processes.append(process)
        return process

    def start(self, count: int) -> None:
        for _ in range(count):
            self.spawn()

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.poll() is None]

    def replace_dead(self) -> list[int]:
        dead = [p for p in self.processes if p.poll() is not None]
        for process in dead:
            self.processes.remove(process)
            self.spawn()
        return [p.pid for p in dead]

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and anything it forked: what a crashed machine looks like."""
        _signal(process, signal.SIGKILL, group=True)
        process.wait()
        self.processes.remove(process)

    def freeze(self, process: subprocess.Popen) -> None:
        """SIGSTOP the worker (and its children): a zombie that will wake up later."""
        _signal(process, signal.SIGSTOP, group=True)

    def thaw(self, process: subprocess.Popen) -> None:
        _signal(process, signal.SIGCONT, group=True)

    def stop(self, timeout: float = 10) -> None:
        """Warm shutdown of every worker at once, then SIGKILL for any still running."""
        for process in self.alive():
            _signal(process, signal.SIGCONT, group=True)  # a frozen worker cannot hear SIGTERM
            _signal(process, signal.SIGTERM, group=True)
        for process in self.processes:
            stop_process(process, timeout, group=True)
        self.processes = []


def parse_pools(specs: Sequence[str]) -> list[tuple[list[str], int]]:
    """Worker pools from ``QUEUE=N`` or ``QUEUE,QUEUE=N`` (bulkheads: each pool's workers read
    only its queues, so a slow tool on its own queue cannot take every worker)."""
    pools: list[tuple[list[str], int]] = []
    for spec in specs:
        queues, sep, count = spec.partition("=")
        names = [name.strip() for name in queues.split(",") if name.strip()]
        if not sep or not names or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"pool {spec!r}: write QUEUE=N or QUEUE,QUEUE=N, with N workers (at least 1)")
        pools.append((names, int(count)))
    named = [name for names, _ in pools for name in names]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        raise ValueError(f"queue {twice[0]!r} is in more than one pool; give each queue one pool")
    return pools


class WorkerPools:
    """Several worker pools, supervised together (what ``--pools`` starts)."""

    def __init__(self, pools: Sequence[tuple[list[str], int]], env: dict[str, str] | None = None):
        self.pools = [(WorkerPool(queues=queues, env=env), count) for queues, count in pools]

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [process for pool, _ in self.pools for process in pool.processes]

    def start(self) -> None:
        for pool, count in self.pools:
            pool.start(count)

    def alive(self) -> list[subprocess.Popen]:
        return [process for pool, _ in self.pools for process in pool.alive()]

    def replace_dead(self) -> list[int]:
        return [pid for pool, _ in self.pools for pid in pool.replace_dead()]

    def stop(self, timeout: float = 10) -> None:
        for pool, _ in self.pools:
            pool.stop(timeout=timeout)

    def describe(self) -> str:
        return "; ".join(f"{count} on {', '.join(pool.queues)}" for pool, count in self.pools)
