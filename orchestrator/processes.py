"""Worker processes started and supervised from Python (run_workers, chaos, bench, tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


class WorkerPool:
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
        """SIGKILL the worker and its children (RQ's scheduler): what a crashed machine looks like."""
        _signal_group(process, signal.SIGKILL)
        process.wait()
        self.processes.remove(process)

    def stop(self, timeout: float = 10) -> None:
        for process in self.alive():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            _signal_group(process, signal.SIGKILL)  # a scheduler child left behind, if any
        self.processes = []


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Each worker leads its own session (start_new_session), so its group is its own."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
