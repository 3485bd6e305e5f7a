"""The chaos check: real workers SIGKILLed at random and Redis flushed under load, then the
sink (outside the engine) is checked for duplicate deliveries and the database for lost runs.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Count, Q

from .demo import sink
from .engine.dispatch import redis_connection
from .engine.reconnect import with_db_retry
from .engine.runs import start_run
from .models import Effect, Run, RunStatus
from .models.runs import TERMINAL_RUN_STATUSES
from .processes import WorkerPool

EFFECT_KEYS = ("charge", "shipment", "email")


@dataclass
class ChaosResult:
    runs: int
    succeeded: int
    failed: int
    resumed: int
    duplicate_effects: int
    lost_runs: int
    missing_effects: int
    kills: int
    flushes: int
    ledger_reexecutions: int
    dedup_hits: int
    seconds: float

    @property
    def passed(self) -> bool:
        return (self.succeeded == self.runs and self.duplicate_effects == 0 and self.lost_runs == 0
                and self.missing_effects == 0)

    def summary(self) -> str:
        return (f"chaos: runs={self.runs} succeeded={self.succeeded} failed={self.failed} resumed={self.resumed} "
                f"duplicate_effects={self.duplicate_effects} lost_runs={self.lost_runs} seconds={self.seconds:.1f}")


def demo_order(batch: str, index: int, pack_seconds: float) -> dict:
    """Orders of varying size: about a third take the fraud-check branch (total >= 500)."""
    rng = random.Random(index)
    items = [{"sku": f"SKU-{rng.randint(1, 50)}", "qty": rng.randint(1, 3), "price": rng.choice([5, 40, 120, 260])}
             for _ in range(rng.randint(1, 4))]
    return {"order_id": f"chaos-{batch}-{index}", "customer": f"customer{index}@example.com", "items": items,
            "pack_seconds": pack_seconds}


def run_chaos(
    runs: int,
    workers: int,
    kill_every: float,
    flush_every: float | None = None,
    timeout: float = 900,
    pack_seconds: float = 0.5,
    say: Callable[[str], None] = print,
) -> ChaosResult:
    batch = uuid.uuid4().hex[:8]
    rng = random.Random()
    pool = WorkerPool()
    kills = flushes = 0
    started = time.monotonic()
    try:
        pool.start(workers)
        run_ids = [start_run("order_fulfilment", demo_order(batch, i, pack_seconds),
                             idempotency_key=f"chaos-{batch}-{i}")[0].pk for i in range(runs)]
        say(f"chaos: started {runs} runs (batch {batch}) on {workers} workers")
        next_kill = started + kill_every
        next_flush = started + flush_every if flush_every else None
        next_report = started + 5
        remaining = runs
        while remaining and time.monotonic() - started < timeout:
            now = time.monotonic()
            if now >= next_kill:
                victims = pool.alive()
                if victims:
                    pool.kill(rng.choice(victims))
                    pool.spawn()
                    kills += 1
                next_kill = now + kill_every
            if next_flush is not None and now >= next_flush:
                redis_connection().flushdb()
                flushes += 1
                next_flush = now + flush_every
            if now >= next_report:
                say(f"chaos: t={now - started:.0f}s finished={runs - remaining}/{runs} kills={kills} "
                    f"flushes={flushes}")
                next_report = now + 5
            time.sleep(0.2)
            remaining = with_db_retry(
                lambda: Run.objects.filter(pk__in=run_ids).exclude(status__in=TERMINAL_RUN_STATUSES).count()
            )
    finally:
        pool.stop()
    return _tally(run_ids, kills, flushes, time.monotonic() - started)


def _tally(run_ids: list, kills: int, flushes: int, seconds: float) -> ChaosResult:
    runs = Run.objects.filter(pk__in=run_ids)
    counts = runs.aggregate(
        succeeded=Count("pk", filter=Q(status=RunStatus.SUCCEEDED)),
        failed=Count("pk", filter=Q(status__in=[RunStatus.FAILED, RunStatus.CANCELLED])),
        resumed=Count("pk", filter=Q(resume_count__gt=0)),
        lost=Count("pk", filter=~Q(status__in=TERMINAL_RUN_STATUSES)),
    )
    delivered = sink.delivery_counts()
    keys = {effect.idempotency_key: effect.run_id
            for effect in Effect.objects.filter(run_id__in=run_ids, key__in=EFFECT_KEYS)}
    duplicates = sum(1 for key in keys if delivered.get(key, 0) > 1)
    succeeded_ids = set(runs.filter(status=RunStatus.SUCCEEDED).values_list("pk", flat=True))
    missing = sum(1 for key, run_id in keys.items() if run_id in succeeded_ids and delivered.get(key, 0) == 0)
    effects = Effect.objects.filter(run_id__in=run_ids)
    return ChaosResult(
        runs=len(run_ids), succeeded=counts["succeeded"], failed=counts["failed"], resumed=counts["resumed"],
        duplicate_effects=duplicates, lost_runs=counts["lost"], missing_effects=missing, kills=kills,
        flushes=flushes, ledger_reexecutions=effects.filter(executions__gt=1).count(),
        dedup_hits=sum(effects.values_list("dedup_hits", flat=True)), seconds=seconds,
    )
