"""How well a shared rate limit holds under load (``manage.py bench``'s ratelimit line).

Three workers run many one-step runs of ``demo.partner_api`` limited to ``rate`` calls a second
(burst 1); the partner (the demo sink, outside the engine's database) records when each call
arrived. The figure is the rate the partner observed, start to end, and the most calls it saw
in any one second: both should sit at the target, not above it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from .benchmark import wait_for_workers
from .processes import WorkerPool

WORKFLOW = "bench_partner_calls"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RateResult:
    target: float
    arrivals: list[float]

    @property
    def observed(self) -> float:
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else float("inf")

    @property
    def busiest_second(self) -> int:
        return max(sum(1 for t in self.arrivals if start <= t < start + 1.0) for start in self.arrivals)

    def line(self) -> str:
        return (f"bench: ratelimit_target={self.target:g} ratelimit_observed={self.observed:.2f} "
                f"ratelimit_busiest_second={self.busiest_second} calls={len(self.arrivals)}")


def measure_ratelimit(rate: float, calls: int, workers: int, redis_url: str, progress: Progress) -> RateResult:
    """Start ``calls`` runs at once on ``workers`` workers sharing a limit of ``rate``/s."""
    from django.test import override_settings

    from .demo import sink
    from .engine.runs import start_run
    from .engine.workflows import publish
    from .models import Run, RunStatus

    publish({"name": WORKFLOW, "start_at": "ask", "states": {
        "ask": {"type": "task", "handler": "demo.partner_api", "end": True}}})
    Run.objects.filter(workflow__name=WORKFLOW).delete()
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    sink_path = str(Path(tempfile.mkdtemp(prefix="ratchet-ratelimit-")) / "sink.sqlite3")
    env = {"REDIS_URL": redis_url, "RATCHET_LOG_LEVEL": "WARNING", "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
           "RATCHET_SINK_PATH": sink_path,
           "RATCHET_RATE_LIMITS": json.dumps({"demo.partner_api": {"rate": rate, "burst": 1}})}
    pool = WorkerPool(env=env)
    pool.start(workers)
    try:
        wait_for_workers(redis, workers, lambda: len(pool.alive()) == len(pool.processes))
        with override_settings(REDIS_URL=redis_url):
            runs = [start_run(WORKFLOW, {"n": n})[0].pk for n in range(calls)]
        deadline = time.monotonic() + calls / rate * 2 + 30
        while (done := Run.objects.filter(pk__in=runs, status=RunStatus.SUCCEEDED).count()) < calls:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {calls} rate-limited runs finished in time")
            progress(f"ratelimit: {done}/{calls} calls made")
            time.sleep(1.0)
    finally:
        pool.stop()
    return RateResult(rate, sink.arrivals("partner_api", sink_path))
