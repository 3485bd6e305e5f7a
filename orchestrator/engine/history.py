"""Reading a run's history: what the run detail page, the graph colouring and the KPIs read.

Pages never query attempts, effects and events themselves: they go through these functions,
so what a "retry", a "resume" or a "duplicate" means is decided once, here. Each function
costs a fixed number of queries, whatever the run's length.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from ..models import AttemptKind, AttemptStatus, Effect, EffectStatus, Event, EventKind, Fork, Run, StepAttempt
from ..models.runs import ACTIVE_ATTEMPT_STATUSES


@dataclass(frozen=True)
class AttemptEntry:
    """One attempt on the run's timeline, with its links to the attempt it retried or resumed."""

    id: int
    kind: str
    state_name: str
    branch_path: str
    sequence: int
    attempt: int
    status: str
    queue: str
    worker: str
    scheduled_at: Any
    not_before: Any  # a timer or backoff: not to run before
    claimed_at: Any
    finished_at: Any
    queue_wait_ms: float | None
    duration_ms: float | None
    error_type: str
    error_message: str
    failure_mode: str
    tokens: int
    cost: Decimal
    retry_of: int | None  # the previous try of the same visit (a retry or a resume)
    resumed_from: int | None  # set when the previous try was lost (its worker died)
    effect_key: str  # what a compensation undoes

    @property
    def is_retry(self) -> bool:
        return self.retry_of is not None and self.resumed_from is None


def _ms(start: Any, end: Any) -> float | None:
    return round((end - start).total_seconds() * 1000, 1) if start and end else None


def timeline(run: Run) -> list[AttemptEntry]:
    """Every attempt, oldest first (two queries)."""
    keys = dict(Effect.objects.filter(run=run).values_list("pk", "key"))
    previous: dict[tuple, int] = {}
    entries = []
    for a in StepAttempt.objects.filter(run=run).order_by("id"):
        visit = (a.kind, a.state_name, a.branch_path, a.sequence, a.effect_id)
        error = a.error or {}
        entries.append(AttemptEntry(
            id=a.pk, kind=a.kind, state_name=a.state_name, branch_path=a.branch_path, sequence=a.sequence,
            attempt=a.attempt, status=a.status, queue=a.queue, worker=a.worker, scheduled_at=a.scheduled_at,
            not_before=a.not_before, claimed_at=a.claimed_at, finished_at=a.finished_at,
            queue_wait_ms=_ms(max(a.scheduled_at, a.not_before or a.scheduled_at), a.claimed_at),  # not a timer
            duration_ms=_ms(a.claimed_at, a.finished_at), error_type=error.get("type", ""),
            error_message=error.get("message", ""), failure_mode=a.failure_mode, tokens=a.tokens, cost=a.cost,
            retry_of=previous.get(visit), resumed_from=a.resumed_from_id, effect_key=keys.get(a.effect_id, ""),
        ))
        previous[visit] = a.pk
    return entries


# Graph colours, strongest first: a state shows the strongest mark it has.
MARKS = ("current", "failed", "compensated", "visited")


def state_marks(run: Run) -> dict[str, str]:
    """State name -> "current", "failed", "compensated" or "visited"; unvisited states are
    absent (two queries)."""
    marks: dict[str, str] = {}

    def mark(state: str, how: str) -> None:
        if state not in marks or MARKS.index(how) < MARKS.index(marks[state]):
            marks[state] = how

    last_of_visit: dict[tuple, StepAttempt] = {}
    for a in StepAttempt.objects.filter(run=run, kind=AttemptKind.STEP).order_by("id"):
        last_of_visit[(a.state_name, a.branch_path, a.sequence)] = a
    for (state, _, _), a in last_of_visit.items():
        if a.status in ACTIVE_ATTEMPT_STATUSES:
            mark(state, "current")
        elif a.status == AttemptStatus.SUCCEEDED:
            mark(state, "visited")
        elif a.status != AttemptStatus.CANCELLED or a.pk == run.failed_attempt_id:
            mark(state, "failed")
    for state in Effect.objects.filter(run=run, status=EffectStatus.COMPENSATED).values_list("state_name", flat=True):
        mark(state, "compensated")
    return marks


def fork_counts(run: Run) -> dict[str, str]:
    """Parallel or map state name -> how far its latest visit got, in words ("2/3 done, 1 failed")
    (one query)."""
    counts: dict[str, str] = {}
    for fork in Fork.objects.filter(run=run).order_by("id").only("state_name", "total", "done", "failed",
                                                                   "status", "kind"):
        words = f"{fork.done}/{fork.total} done"
        if fork.failed:
            words += f", {fork.failed} failed"
        if fork.status != "open":
            words += f" ({fork.status})"
        counts[fork.state_name] = words
    return counts


@dataclass(frozen=True)
class EffectEntry:
    key: str
    step: str
    shared: bool
    status: str
    idempotency_key: str
    executions: int
    duplicates: int
    unknown_retries: int
    dedup_hits: int
    late_results: int
    decision: str
    decided_by: str
    result: Any
    error: Any

    @property
    def needs_decision(self) -> bool:
        return self.status in (EffectStatus.UNCERTAIN, EffectStatus.COMPENSATION_FAILED)


def effects_ledger(run: Run) -> list[EffectEntry]:
    """The run's effects in the order they were first recorded (two queries)."""
    late = Counter(Event.objects.filter(run=run, kind=EventKind.EFFECT_LATE_RESULT)
                   .values_list("data__key", flat=True))
    return [
        EffectEntry(key=e.key, step=e.step_label, shared=e.shared, status=e.status,
                    idempotency_key=e.idempotency_key, executions=e.executions, duplicates=e.duplicates,
                    unknown_retries=e.unknown_retries, dedup_hits=e.dedup_hits, late_results=late[e.key],
                    decision=e.decision, decided_by=e.decided_by.get_username() if e.decided_by else "",
                    result=e.result, error=e.error)
        for e in Effect.objects.filter(run=run).select_related("decided_by").order_by("id")
    ]


def events(run: Run, kinds: tuple[str, ...] = ()) -> QuerySet[Event]:
    """The run's events, oldest first, with their attempt and actor (one query)."""
    found = Event.objects.filter(run=run).select_related("attempt", "actor").order_by("id")
    return found.filter(kind__in=kinds) if kinds else found


def duplicate_figures(runs: QuerySet[Run]) -> dict[str, int]:
    """The duplicate-effect figures of a set of runs (one query): distinct keys, keys executed
    twice (known), keys retried after an unknown outcome (possible), and re-executions the
    ledger prevented."""
    figures = Effect.objects.filter(run__in=runs).aggregate(
        keys=Count("pk"), duplicated=Count("pk", filter=Q(duplicates__gt=0)),
        possible=Count("pk", filter=Q(unknown_retries__gt=0)), dedup_hits=Sum("dedup_hits"),
    )
    return {name: value or 0 for name, value in figures.items()}
