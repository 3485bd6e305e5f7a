"""Reading a run's history: what the run detail page, the graph colouring and the KPIs read.

Pages never query attempts, effects and events themselves: they go through these functions,
so what a "retry", a "resume" or a "duplicate" means is decided once, here. Each function
costs a fixed number of queries, whatever the run's length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.fields.json import KT

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
    traceback: str = ""  # the handler's, when it raised (errors.error_payload keeps the last frames)

    @property
    def is_retry(self) -> bool:
        return self.retry_of is not None and self.resumed_from is None


def _ms(start: Any, end: Any) -> float | None:
    return round((end - start).total_seconds() * 1000, 1) if start and end else None


TIMELINE_FIELDS = ("id", "kind", "state_name", "branch_path", "sequence", "attempt", "status", "queue", "worker",
                   "scheduled_at", "not_before", "claimed_at", "finished_at", "failure_mode", "tokens", "cost",
                   "resumed_from_id", "effect_id")


def timeline(run: Run, *, tracebacks: bool = True) -> list[AttemptEntry]:
    """Every attempt, oldest first (two queries). Only the error's type, message and (with
    ``tracebacks``) traceback are read, never inputs or outputs: a run retried 2,000 times holds
    megabytes of those, and a page shows a bounded part (``tracebacks_of`` reads the shown ones)."""
    keys = dict(Effect.objects.filter(run=run).values_list("pk", "key"))
    errors = {"error_type": KT("error__type"), "error_message": KT("error__message")}
    if tracebacks:
        errors["error_traceback"] = KT("error__traceback")
    previous: dict[tuple, int] = {}
    entries = []
    for a in StepAttempt.objects.filter(run=run).order_by("id").values(*TIMELINE_FIELDS, **errors):
        visit = (a["kind"], a["state_name"], a["branch_path"], a["sequence"], a["effect_id"])
        scheduled, claimed = a["scheduled_at"], a["claimed_at"]
        entries.append(AttemptEntry(
            id=a["id"], kind=a["kind"], state_name=a["state_name"], branch_path=a["branch_path"],
            sequence=a["sequence"], attempt=a["attempt"], status=a["status"], queue=a["queue"], worker=a["worker"],
            scheduled_at=scheduled, not_before=a["not_before"], claimed_at=claimed, finished_at=a["finished_at"],
            queue_wait_ms=_ms(max(scheduled, a["not_before"] or scheduled), claimed),  # not a timer
            duration_ms=_ms(claimed, a["finished_at"]), error_type=a["error_type"] or "",
            error_message=a["error_message"] or "", failure_mode=a["failure_mode"], tokens=a["tokens"],
            cost=a["cost"], retry_of=previous.get(visit), resumed_from=a["resumed_from_id"],
            effect_key=keys.get(a["effect_id"], ""), traceback=a.get("error_traceback") or "",
        ))
        previous[visit] = a["id"]
    return entries


def first_tries(entries: Iterable[AttemptEntry]) -> dict[int, int]:
    """Attempt id -> the id of the first try of its visit, following ``retry_of`` (retries and
    resumes); ``entries`` oldest first, as ``timeline`` gives them."""
    first: dict[int, int] = {}
    for entry in entries:
        first[entry.id] = first.get(entry.retry_of, entry.id) if entry.retry_of is not None else entry.id
    return first


def tracebacks_of(run: Run, attempt_ids: Collection[int]) -> dict[int, str]:
    """Attempt id -> its handler's traceback, for these attempts of ``run`` that have one (one
    query, whatever the number of ids; none for no ids)."""
    if not attempt_ids:
        return {}
    found = (StepAttempt.objects.filter(run=run, pk__in=list(attempt_ids), error__has_key="traceback")
             .values_list("pk", KT("error__traceback")))
    return {pk: text for pk, text in found if text}


# Graph colours, strongest first: a state shows the strongest mark it has.
MARKS = ("current", "failed", "compensated", "visited")


def state_marks(run: Run) -> dict[str, str]:
    """State name -> "current", "failed", "compensated" or "visited"; unvisited states are
    absent (two queries)."""
    marks: dict[str, str] = {}

    def mark(state: str, how: str) -> None:
        if state not in marks or MARKS.index(how) < MARKS.index(marks[state]):
            marks[state] = how

    last_of_visit: dict[tuple, tuple[int, str]] = {}
    for pk, state, branch, sequence, status in (StepAttempt.objects.filter(run=run, kind=AttemptKind.STEP)
                                                .order_by("id")
                                                .values_list("pk", "state_name", "branch_path", "sequence", "status")):
        last_of_visit[(state, branch, sequence)] = pk, status
    for (state, _, _), (pk, status) in last_of_visit.items():
        if status in ACTIVE_ATTEMPT_STATUSES:
            mark(state, "current")
        elif status == AttemptStatus.SUCCEEDED:
            mark(state, "visited")
        elif status != AttemptStatus.CANCELLED or pk == run.failed_attempt_id:
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
    id: int
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
    # What the ledger knows, for a person deciding an uncertain effect.
    intent_at: Any = None
    attempt_id: int | None = None
    attempt_label: str = ""
    worker: str = ""
    checked: bool | None = None  # the last downstream check: found it (True), did not (False), none (None)

    @property
    def needs_decision(self) -> bool:
        return self.status in (EffectStatus.UNCERTAIN, EffectStatus.COMPENSATION_FAILED)


def effects_ledger(run: Run) -> list[EffectEntry]:
    """The run's effects in the order they were first recorded (two queries)."""
    late: Counter = Counter()
    checked: dict[str, bool] = {}
    for kind, key, found in (Event.objects.filter(run=run, kind__in=(EventKind.EFFECT_LATE_RESULT,
                                                                      EventKind.EFFECT_CHECKED))
                             .order_by("id").values_list("kind", "data__key", "data__found")):
        if kind == EventKind.EFFECT_LATE_RESULT:
            late[key] += 1
        else:
            checked[key] = bool(found)
    return [
        EffectEntry(id=e.pk, key=e.key, step=e.step_label, shared=e.shared, status=e.status,
                    idempotency_key=e.idempotency_key, executions=e.executions, duplicates=e.duplicates,
                    unknown_retries=e.unknown_retries, dedup_hits=e.dedup_hits, late_results=late[e.key],
                    decision=e.decision, decided_by=e.decided_by.get_username() if e.decided_by else "",
                    result=e.result, error=e.error, intent_at=e.intent_at, attempt_id=e.attempt_id,
                    attempt_label=(f"{e.attempt.state_name} #{e.attempt.sequence}, try {e.attempt.attempt}"
                                   if e.attempt else ""),
                    worker=e.attempt.worker if e.attempt else "", checked=checked.get(e.key))
        for e in Effect.objects.filter(run=run).select_related("decided_by", "attempt")
        .defer("attempt__input", "attempt__output", "attempt__error", "attempt__progress").order_by("id")
    ]


# Event kinds in the groups the run page filters the history by; every kind is in exactly one.
# "operator" holds what only an operator's action records; an operator's cancel or approval is
# in "run" or "approvals", and the page's "only operator actions" (events with an actor) finds all.
EVENT_GROUPS: dict[str, tuple[str, tuple[EventKind, ...]]] = {
    "run": ("Run", (EventKind.RUN_STARTED, EventKind.RUN_SUCCEEDED, EventKind.RUN_FAILED,
                    EventKind.RUN_CANCELLED, EventKind.RUN_COMPENSATED, EventKind.RUN_PAUSED)),
    "steps": ("Steps", (
        EventKind.STEP_SCHEDULED, EventKind.STEP_DISPATCHED, EventKind.STEP_CLAIMED, EventKind.STEP_SUCCEEDED,
        EventKind.STEP_FAILED, EventKind.STEP_RETRIED, EventKind.STEP_CAUGHT, EventKind.STEP_TIMED_OUT,
        EventKind.STEP_LOST, EventKind.STEP_RESUMED, EventKind.RESULT_DISCARDED, EventKind.CHOICE_TAKEN,
        EventKind.WAIT_STARTED, EventKind.QUEUE_UNSERVED)),
    "effects": ("Effects and compensations", (
        EventKind.EFFECT_INTENT, EventKind.EFFECT_CONFIRMED, EventKind.EFFECT_FAILED, EventKind.EFFECT_DEDUP_HIT,
        EventKind.EFFECT_UNCERTAIN, EventKind.EFFECT_RETRIED, EventKind.EFFECT_CHECKED,
        EventKind.EFFECT_LATE_RESULT, EventKind.EFFECT_DUPLICATED, EventKind.COMPENSATION_STARTED,
        EventKind.COMPENSATION_DONE, EventKind.COMPENSATION_FAILED)),
    "branches": ("Branches, joins and sub-workflows", (
        EventKind.BRANCHES_STARTED, EventKind.BRANCH_FINISHED, EventKind.BRANCH_PAUSED, EventKind.JOINED,
        EventKind.JOIN_FAILED, EventKind.AGGREGATION_CONFLICT, EventKind.CHILD_STARTED, EventKind.CHILD_FINISHED)),
    "budgets": ("Budgets and flow control", (EventKind.BUDGET_EXCEEDED, EventKind.THROTTLED, EventKind.CIRCUIT_OPEN,
                                             EventKind.BREAKER_OPENED, EventKind.BREAKER_CLOSED)),
    "agents": ("Agents and models", (EventKind.MODEL_ANSWERED, EventKind.MODEL_REPLAYED, EventKind.ROUTE_TAKEN,
                                     EventKind.HANDED_OFF)),
    "approvals": ("Approvals", (EventKind.APPROVAL_REQUESTED, EventKind.APPROVAL_DECIDED,
                                EventKind.APPROVAL_DECIDED_AHEAD, EventKind.APPROVAL_CLAIMED,
                                EventKind.APPROVAL_RELEASED, EventKind.APPROVAL_ESCALATED,
                                EventKind.APPROVAL_CANCELLED)),
    "operator": ("Operator decisions", (EventKind.RUN_RESUMED, EventKind.RUN_REDRIVEN, EventKind.EFFECT_DECIDED,
                                        EventKind.BRANCH_RESUMED)),
}


def kinds_of(groups: tuple[str, ...]) -> tuple[str, ...]:
    """The event kinds in ``groups`` (names of ``EVENT_GROUPS``; unknown names add nothing)."""
    return tuple(str(kind) for group in groups if group in EVENT_GROUPS for kind in EVENT_GROUPS[group][1])


def events(run: Run, kinds: tuple[str, ...] = (), *, state: str = "", by_person: bool = False) -> QuerySet[Event]:
    """The run's events, oldest first, with their actor (one query): only of ``kinds``, of ``state``
    and, with ``by_person``, only those a person did (an actor is recorded). Their attempts are not
    joined: the page shows an attempt's id, and a failed attempt's row carries its traceback."""
    found = Event.objects.filter(run=run).select_related("actor").order_by("id")
    if kinds:
        found = found.filter(kind__in=kinds)
    if state:
        found = found.filter(state_name=state)
    if by_person:
        found = found.filter(actor__isnull=False)
    return found


def duplicate_figures(runs: QuerySet[Run]) -> dict[str, int]:
    """The duplicate-effect figures of a set of runs (one query): distinct keys, keys executed
    twice (known), keys retried after an unknown outcome (possible), and re-executions the
    ledger prevented."""
    figures = Effect.objects.filter(run__in=runs).aggregate(
        keys=Count("pk"), duplicated=Count("pk", filter=Q(duplicates__gt=0)),
        possible=Count("pk", filter=Q(unknown_retries__gt=0)), dedup_hits=Sum("dedup_hits"),
    )
    return {name: value or 0 for name, value in figures.items()}
