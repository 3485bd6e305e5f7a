"""``/metrics``: Prometheus text read from the database at each scrape.

No process keeps counters of its own: web and worker processes come and go, and whichever one
serves a scrape must give the same figures, so every value is counted by the database when
Prometheus asks. A scrape costs seven queries whatever the number of runs, attempts, effects,
workflows, queues or workers (plus one pipelined Redis round trip for RQ's list lengths):

1. runs by workflow, status and failure mode
2. attempts by status
3. effects by status, with duplicate and dedup-hit totals (and those awaiting a decision)
4. stuck runs, by workflow
5. scheduled attempts per queue, due now or later
6. live workers (``orchestrator.engine.workers.alive``)
7. the latency histogram of succeeded runs, by workflow: one count per bucket, all in SQL

and each configured circuit breaker's state, read from Redis (where breakers live).

Who may read it: a client sending ``Authorization: Bearer <RATCHET_METRICS_TOKEN>``, a client
whose address is in ``RATCHET_METRICS_ALLOW``, or a signed-in staff user. A wrong token is
refused (403) even from an allowed address; no credentials at all get 401.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, Exists, OuterRef, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.db.models.lookups import LessThanOrEqual
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from orchestrator.engine import breakers, clock, workers
from orchestrator.models import AttemptStatus, Effect, Run, RunStatus, StepAttempt
from orchestrator.models.effects import UNRESOLVED_EFFECT_STATUSES

from .percentiles import seconds_between
from .queues import configured_queues, queue_stats, rq_lengths

# Upper bounds (seconds) of the run latency histogram's buckets; +Inf is added.
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
# A run making no progress for this long counts as stuck (settings.RATCHET_METRICS_STUCK_MINUTES).
STUCK_MINUTES_DEFAULT = 15.0
# Runs the engine itself drives: a run waiting for a person or paused for an operator is not stuck.
ENGINE_DRIVEN = (RunStatus.RUNNING, RunStatus.COMPENSATING)


def stuck_minutes() -> float:
    return float(getattr(settings, "RATCHET_METRICS_STUCK_MINUTES", STUCK_MINUTES_DEFAULT))


def stuck_runs(now: datetime, minutes: float) -> Any:
    """Runs the engine drives (running, compensating) older than ``minutes`` where, for that long,
    no attempt was claimed, finished or heartbeat, and none waits on a person, a child run or a
    timer that is not due yet: work that should have moved and did not."""
    cutoff = now - timedelta(minutes=minutes)
    attempts = StepAttempt.objects.filter(run=OuterRef("pk"))
    moving = attempts.filter(Q(claimed_at__gte=cutoff) | Q(finished_at__gte=cutoff) | Q(heartbeat_at__gte=cutoff)
                             | Q(status=AttemptStatus.WAITING)
                             | Q(status=AttemptStatus.SCHEDULED, not_before__gt=now))
    return Run.objects.filter(status__in=ENGINE_DRIVEN, created_at__lt=cutoff).filter(~Exists(moving))


class RatchetCollector:
    """Reads the database (and Redis, if it answers) on every ``collect``; holds no state."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def describe(self) -> list[Metric]:
        # Registering must not query the database (it happens at import).
        return []

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now() + clock.offset()
        yield from self._runs()
        yield from self._attempts()
        yield from self._effects()
        yield from self._stuck(now)
        yield from self._queues(now)
        yield from self._latency()
        yield from self._breakers()

    def _runs(self) -> Iterable[Metric]:
        runs = GaugeMetricFamily("ratchet_runs", "Runs by workflow, status and failure mode (all time).",
                                 labels=["workflow", "status", "failure_mode"])
        rows = (Run.objects.order_by().values("workflow__name", "status", "failure_mode")
                .annotate(n=Count("pk")).order_by("workflow__name", "status", "failure_mode"))
        for row in rows:
            runs.add_metric([row["workflow__name"], row["status"], row["failure_mode"] or ""], row["n"])
        return [runs]

    def _attempts(self) -> Iterable[Metric]:
        attempts = GaugeMetricFamily("ratchet_attempts", "Step and compensation attempts by status.",
                                     labels=["status"])
        counted = dict(StepAttempt.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in AttemptStatus.values:
            attempts.add_metric([status], counted.get(status, 0))
        return [attempts]

    def _effects(self) -> Iterable[Metric]:
        effects = GaugeMetricFamily("ratchet_effects", "Side effects in the ledger by status.", labels=["status"])
        rows = {row["status"]: row for row in Effect.objects.order_by().values("status").annotate(
            n=Count("pk"), duplicates=Coalesce(Sum("duplicates"), 0), dedup_hits=Coalesce(Sum("dedup_hits"), 0))}
        for status in Effect._meta.get_field("status").choices:
            effects.add_metric([status[0]], rows.get(status[0], {}).get("n", 0))
        duplicates = CounterMetricFamily(
            "ratchet_effect_duplicates", "Effect executions known to have happened twice.")
        duplicates.add_metric([], sum(row["duplicates"] for row in rows.values()))
        dedup = CounterMetricFamily(
            "ratchet_effect_dedup_hits", "Re-executions of effects that the ledger prevented.")
        dedup.add_metric([], sum(row["dedup_hits"] for row in rows.values()))
        waiting = GaugeMetricFamily(
            "ratchet_effects_awaiting_decision",
            "Effects an operator must decide on (uncertain outcome, or a failed compensation).", labels=["status"])
        for status in sorted(UNRESOLVED_EFFECT_STATUSES):
            waiting.add_metric([status], rows.get(status, {}).get("n", 0))
        return [effects, duplicates, dedup, waiting]

    def _stuck(self, now: datetime) -> Iterable[Metric]:
        minutes = stuck_minutes()
        stuck = GaugeMetricFamily(
            "ratchet_runs_stuck",
            f"Running or compensating runs with no attempt claimed, finished or heartbeat for {minutes:g} minutes "
            "(and none waiting on a person, a child run or a timer).", labels=["workflow"])
        rows = (stuck_runs(now, minutes).order_by().values("workflow__name").annotate(n=Count("pk"))
                .order_by("workflow__name"))
        for row in rows:
            stuck.add_metric([row["workflow__name"]], row["n"])
        threshold = GaugeMetricFamily("ratchet_runs_stuck_threshold_seconds",
                                      "How long without progress makes a run count as stuck.")
        threshold.add_metric([], minutes * 60)
        return [stuck, threshold]

    def _queues(self, now: datetime) -> Iterable[Metric]:
        stats = queue_stats(now)
        alive = workers.alive(now)
        names = sorted(set(configured_queues()) | set(stats) | {q for w in alive for q in w.queues})
        scheduled = GaugeMetricFamily(
            "ratchet_queue_scheduled_attempts",
            "Scheduled attempts per queue in the database; due=\"false\": waiting for a timer or backoff.",
            labels=["queue", "due"])
        running = GaugeMetricFamily("ratchet_queue_running_attempts", "Running attempts per queue.", labels=["queue"])
        oldest = GaugeMetricFamily("ratchet_queue_oldest_due_age_seconds",
                                   "How long the oldest due attempt of each queue has waited (0: none waits).",
                                   labels=["queue"])
        readers = GaugeMetricFamily("ratchet_queue_workers", "Live workers reading each queue (0: nobody reads it).",
                                    labels=["queue"])
        for name in names:
            row = stats.get(name, {})
            scheduled.add_metric([name, "true"], row.get("due", 0))
            scheduled.add_metric([name, "false"], row.get("later", 0))
            running.add_metric([name], row.get("running", 0))
            since = row.get("waiting_since")
            oldest.add_metric([name], max((now - since).total_seconds(), 0.0) if since else 0.0)
            readers.add_metric([name], sum(1 for w in alive if name in w.queues))
        lengths = rq_lengths(names)
        redis_up = GaugeMetricFamily("ratchet_redis_up", "1 if Redis answered this scrape, else 0.")
        redis_up.add_metric([], 0 if lengths is None else 1)
        rq = GaugeMetricFamily("ratchet_rq_queue_length", "Jobs in each RQ queue's Redis list (absent: Redis down).",
                               labels=["queue"])
        for name, length in (lengths or {}).items():
            rq.add_metric([name], length)
        alive_total = GaugeMetricFamily("ratchet_workers_alive", "Workers that reported themselves alive lately.")
        alive_total.add_metric([], len(alive))
        return [scheduled, running, oldest, readers, redis_up, rq, alive_total]

    def _latency(self) -> Iterable[Metric]:
        wall = seconds_between("created_at", "finished_at")
        # Cumulative by construction: each bucket counts every run at or under its bound.
        buckets = {f"le_{i}": Count("pk", filter=LessThanOrEqual(wall, Value(float(bound))))
                   for i, bound in enumerate(LATENCY_BUCKETS)}
        rows = (Run.objects.filter(status=RunStatus.SUCCEEDED, finished_at__isnull=False)
                .order_by().values("workflow__name")
                .annotate(n=Count("pk"), total=Coalesce(Sum(wall), Value(0.0)), **buckets).order_by("workflow__name"))
        latency = HistogramMetricFamily(
            "ratchet_run_duration_seconds", "Wall time (created to finished) of succeeded runs.", labels=["workflow"])
        for row in rows:
            counts = [(floatToGoString(bound), row[f"le_{i}"]) for i, bound in enumerate(LATENCY_BUCKETS)]
            latency.add_metric([row["workflow__name"]], [*counts, ("+Inf", row["n"])], float(row["total"]))
        return [latency]

    def _breakers(self) -> Iterable[Metric]:
        opened = GaugeMetricFamily(
            "ratchet_circuit_breaker_open",
            "1 while a handler's circuit breaker is open or half-open (its calls held back), else 0.",
            labels=["handler"])
        for found in breakers.states():
            opened.add_metric([found.handler], 0 if found.state == "closed" else 1)
        return [opened]


def render_metrics(now: datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RatchetCollector(now))
    return generate_latest(registry)


def _allowed_address(address: str, allowed: Iterable[str]) -> bool:
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if client in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def _denied(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="ratchet-metrics"'
    return response


def check_access(request: HttpRequest) -> HttpResponse | None:
    """None if the request may read the metrics, else the refusal to send."""
    token = getattr(settings, "RATCHET_METRICS_TOKEN", "") or ""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and token and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return _denied(403, "Wrong metrics token.")
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client says it is.
    if _allowed_address(request.META.get("REMOTE_ADDR", ""), getattr(settings, "RATCHET_METRICS_ALLOW", ()) or ()):
        return None
    user = request.user
    if user.is_authenticated and user.is_staff:
        return None
    if user.is_authenticated:
        return _denied(403, "Only staff, a metrics token or an allowed address may read the metrics.")
    return _denied(401, "Send Authorization: Bearer <RATCHET_METRICS_TOKEN>, or sign in as staff.")


@login_not_required
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format, read from the database now."""
    refused = check_access(request)
    if refused is not None:
        return refused
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
