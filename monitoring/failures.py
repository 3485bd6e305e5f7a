"""The failure dashboard's reads: failed runs grouped by failure mode and by cause (workflow,
state, error type and message fingerprint), with what to do about each mode, and what else
needs a person: uncertain effects, stuck runs, queues nobody reads. A fixed number of
queries; grouping happens in the database on the fingerprint the engine stores at failure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db.models import Count, F, Max, Min, Window
from django.db.models.functions import RowNumber

from orchestrator.engine.fingerprints import normalised
from orchestrator.models import Effect, EffectStatus, FailureMode, Run, RunStatus, Workflow

from .metrics import stuck_minutes, stuck_runs
from .models import ClusterNote

# What each failure mode means and what to do about it (DESIGN.md section 5).
MITIGATIONS: dict[str, str] = {
    FailureMode.DUPLICATE_SIDE_EFFECT: "A step's side effect may have run twice. Decide the uncertain effect on "
    "the run's page (it happened / retry / compensate); give the effect a check or pass its key downstream.",
    FailureMode.LOST_PROGRESS: "Workers died under a step more often than MAX_RESUMES_PER_STEP allows. Find "
    "what kills them (memory, a crash in the handler), fix it, then redrive.",
    FailureMode.CONTEXT_LOSS: "A step received (or produced) less than its contract declares. Fix the state "
    "before it or the input mapping, then redrive.",
    FailureMode.COORDINATION_DEADLOCK: "A join did not happen in time: a branch waits on something that never "
    "comes. Check the branches' queues and timeouts.",
    FailureMode.COST_EXPLOSION: "A budget was used up (steps, tokens, cost, delegation depth, parallel agents). "
    "Look for loops between agents; raise the budget in a new version only if the work is legitimate.",
    FailureMode.CONFLICTING_AGGREGATION: "Parallel branches disagreed and the reducer's policy is 'error'. "
    "Choose a conflict policy, or make the branches agree.",
    FailureMode.THROTTLING: "A shared tool refused the load. Lower the concurrency or add a rate limit.",
    FailureMode.HANDLER_ERROR: "A handler raised after its retries. Read the error and traceback on a run, fix "
    "the handler or its input, then redrive the cluster.",
    FailureMode.TIMEOUT: "A step or the run ran past its timeout. Raise it, or make the step report heartbeats.",
    FailureMode.REJECTED: "The workflow reached a fail state on purpose (invalid input, a rejection).",
}


@dataclass(frozen=True)
class Cluster:
    failure_mode: str
    workflow: str
    state: str
    fingerprint: str
    runs: int
    first_seen: datetime
    last_seen: datetime
    error_type: str
    message: str  # the latest run's message, with ids and numbers replaced by placeholders
    note: ClusterNote | None = None  # an operator's acknowledgement

    @property
    def mitigation(self) -> str:
        return MITIGATIONS.get(self.failure_mode, "")


@dataclass(frozen=True)
class FailureReport:
    total: int
    by_mode: list[dict[str, Any]]
    clusters: list[Cluster]
    uncertain: list[Effect]
    stuck: list[Run]
    stuck_minutes: float


def failure_report(start: datetime, end: datetime, now: datetime, *, workflow: str = "") -> FailureReport:
    failed = Run.objects.filter(status=RunStatus.FAILED, finished_at__gte=start, finished_at__lt=end)
    if workflow:
        failed = failed.filter(workflow__name=workflow)
    grouped = list(failed.values("failure_mode", "workflow__name", "failure_state", "failure_fingerprint")
                   .annotate(runs=Count("pk"), first=Min("finished_at"), last=Max("finished_at"))
                   .order_by("-runs", "-last")[:200])
    errors = _latest_errors({row["failure_fingerprint"] for row in grouped})
    clusters = []
    for row in grouped:
        error = errors.get((row["workflow__name"], row["failure_fingerprint"])) or {}
        clusters.append(Cluster(
            failure_mode=row["failure_mode"], workflow=row["workflow__name"], state=row["failure_state"],
            fingerprint=row["failure_fingerprint"], runs=row["runs"], first_seen=row["first"], last_seen=row["last"],
            error_type=error.get("type", ""), message=normalised(str(error.get("message", "")))))
    notes = {(n.workflow.name, n.fingerprint): n for n in ClusterNote.objects.filter(
        fingerprint__in={c.fingerprint for c in clusters}).select_related("workflow", "author")}
    clusters = sorted((replace(c, note=notes.get((c.workflow, c.fingerprint))) for c in clusters),
                      key=lambda c: c.note is not None)  # the clusters nobody acknowledged first
    by_mode = [{**row, "mitigation": MITIGATIONS.get(row["failure_mode"], "")}
               for row in failed.values("failure_mode").annotate(runs=Count("pk")).order_by("-runs")]
    minutes = stuck_minutes()
    uncertain = list(Effect.objects.filter(status=EffectStatus.UNCERTAIN).select_related("run__workflow")
                     .order_by("id")[:50])
    return FailureReport(
        total=sum(row["runs"] for row in by_mode), by_mode=by_mode, clusters=clusters, uncertain=uncertain,
        stuck=list(stuck_runs(now, minutes).select_related("workflow")[:50]), stuck_minutes=minutes,
    )


def _latest_errors(fingerprints: set[str]) -> dict[tuple[str, str], Any]:
    """The error of the latest failed run of each (workflow, fingerprint), in one query.

    A window function ranks the runs of each cluster once; a correlated subquery per cluster
    ended up in the GROUP BY, so it ran once per failed run (seconds at 100,000 runs).
    """
    if not fingerprints:
        return {}
    latest = (Run.objects.filter(status=RunStatus.FAILED, failure_fingerprint__in=fingerprints)
              .annotate(rank=Window(RowNumber(), partition_by=[F("workflow_id"), F("failure_fingerprint")],
                                    order_by=[F("finished_at").desc(), F("id").desc()]))
              .filter(rank=1).values_list("workflow__name", "failure_fingerprint", "error"))
    return {(workflow, fp): error for workflow, fp, error in latest}


def acknowledge(workflow: str, fingerprint: str, note: str, author: Any) -> ClusterNote:
    """Record (or replace) an operator's note on a cluster."""
    found = Workflow.objects.get(name=workflow)
    record, _ = ClusterNote.objects.update_or_create(
        workflow=found, fingerprint=fingerprint, defaults={"note": note, "author": author})
    return record
