"""What the KPI module returns (KpiReport, KpiPoint, StateLatency), and how each is built from
the figures of the KPI families, whether they come from the runs themselves (kpis.py) or from
hourly rollups (rolled_kpis.py): one definition of every rate and per-task figure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from orchestrator.models import RunStatus, Workflow, WorkflowVersion

WorkflowFilter = str | Workflow | None
VersionFilter = int | WorkflowVersion | None


def _rate(numerator: int | None, denominator: int | None) -> float | None:
    return numerator / denominator if denominator else None


def _per_minute(count: int, start: datetime, end: datetime) -> float:
    return count / ((end - start).total_seconds() / 60)


def _per_task(total: Any, succeeded: int) -> Any:
    if not succeeded:
        return None
    if isinstance(total, Decimal):
        return (total / succeeded).quantize(Decimal("0.000001"))
    return total / succeeded


@dataclass(frozen=True)
class KpiReport:
    """Every KPI of DESIGN.md section 6 for one window (``[start, end)``) and filter.

    Rates are fractions (0..1) and ``None`` when their denominator is 0; percentiles are
    seconds and ``None`` when nothing was measured; counts and totals are 0 then.
    """

    start: datetime
    end: datetime
    workflow: str | None
    version: int | None
    # Terminal runs finished in the window (top-level only without a workflow filter).
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    # Runs created in the window, and those of them that have not reached a terminal status.
    started: int
    unfinished: int
    completion_rate: float | None  # succeeded / finished
    # Wall time (created -> finished) of succeeded runs, and the same minus human_wait_seconds.
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_net_p50: float | None
    latency_net_p95: float | None
    latency_net_p99: float | None
    resumed: int  # finished runs that resumed at least once after a lost worker
    resumed_succeeded: int
    resume_success_rate: float | None  # resumed_succeeded / resumed
    # Effects of runs (child runs too) finished in the window.
    effect_keys: int
    duplicated_effects: int  # keys executed more than once (Effect.duplicates > 0)
    duplicate_effect_rate: float | None  # duplicated_effects / effect_keys
    dedup_hits: int  # re-executions the ledger prevented
    possible_duplicates: int  # keys re-executed after an outcome nobody knew (unknown_retries > 0)
    # Usage of every attempt of the finished runs (failed ones too), per succeeded run.
    tokens: int
    cost: Decimal
    tokens_per_task: float | None
    cost_per_task: Decimal | None
    runs_per_minute: float  # finished / window minutes
    steps_finished: int  # step attempts (any outcome) finished in the window, child runs too
    steps_per_minute: float
    retries: int  # step attempts finished in the window that retried a failure (not resumes)
    retry_rate: float | None  # retries / steps_finished
    attempts_claimed: int  # attempts (steps and compensations) claimed in the window
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    compensated: int  # finished runs whose saga started (event or compensated effect)
    compensation_rate: float | None  # compensated / finished
    budget_kills: int  # finished runs failed as cost_explosion
    budget_kill_rate: float | None  # budget_kills / finished
    approvals_decided: int  # approval decisions in the window matched to their request
    approval_wait_p50: float | None
    approval_wait_p95: float | None

    @property
    def by_status(self) -> dict[str, int]:
        return {RunStatus.SUCCEEDED: self.succeeded, RunStatus.FAILED: self.failed,
                RunStatus.CANCELLED: self.cancelled}


@dataclass(frozen=True)
class KpiPoint:
    """The main KPIs for one bucket ``[start, end)`` of a series, same definitions as KpiReport."""

    start: datetime
    end: datetime
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    completion_rate: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_net_p50: float | None
    latency_net_p95: float | None
    resume_success_rate: float | None
    effect_keys: int
    duplicated_effects: int
    duplicate_effect_rate: float | None
    dedup_hits: int
    tokens_per_task: float | None
    cost_per_task: Decimal | None
    runs_per_minute: float
    steps_finished: int
    steps_per_minute: float
    retry_rate: float | None
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    compensation_rate: float | None
    budget_kills: int


@dataclass(frozen=True)
class StateLatency:
    """Durations (claimed -> finished) of the attempts of one state."""

    workflow: str
    state_name: str
    attempts: int
    p50: float | None
    p95: float | None


def _workflow_name(workflow: WorkflowFilter) -> str | None:
    return workflow.name if isinstance(workflow, Workflow) else workflow


def _version_number(version: VersionFilter) -> int | None:
    return version.number if isinstance(version, WorkflowVersion) else version


def report_from(
    start: datetime, end: datetime, workflow: WorkflowFilter, version: VersionFilter, runs: dict[str, Any],
    latency: dict[str, Any], effects: dict[str, Any], steps: dict[str, Any], queue: dict[str, Any],
    approvals: dict[str, Any],
) -> KpiReport:
    """A KpiReport from each family's figures (the keys of the family queries above)."""
    finished, succeeded = runs["finished"], runs["succeeded"]
    return KpiReport(
        start=start, end=end, workflow=_workflow_name(workflow), version=_version_number(version),
        finished=finished, succeeded=succeeded, failed=runs["failed"], cancelled=runs["cancelled"],
        started=runs["started"], unfinished=runs["unfinished"],
        completion_rate=_rate(succeeded, finished),
        latency_p50=latency["latency_p50"], latency_p95=latency["latency_p95"], latency_p99=latency["latency_p99"],
        latency_net_p50=latency["latency_net_p50"], latency_net_p95=latency["latency_net_p95"],
        latency_net_p99=latency["latency_net_p99"],
        resumed=runs["resumed"], resumed_succeeded=runs["resumed_succeeded"],
        resume_success_rate=_rate(runs["resumed_succeeded"], runs["resumed"]),
        effect_keys=effects["effect_keys"], duplicated_effects=effects["duplicated"],
        duplicate_effect_rate=_rate(effects["duplicated"], effects["effect_keys"]),
        dedup_hits=effects["dedup_hits"], possible_duplicates=effects["possible_duplicates"],
        tokens=runs["tokens"], cost=runs["cost"],
        tokens_per_task=_per_task(float(runs["tokens"]), succeeded), cost_per_task=_per_task(runs["cost"], succeeded),
        runs_per_minute=_per_minute(finished, start, end),
        steps_finished=steps["steps"], steps_per_minute=_per_minute(steps["steps"], start, end),
        retries=steps["retries"], retry_rate=_rate(steps["retries"], steps["steps"]),
        attempts_claimed=queue["queue_wait_n"], queue_wait_p50=queue["queue_wait_p50"],
        queue_wait_p95=queue["queue_wait_p95"],
        compensated=runs["compensated"], compensation_rate=_rate(runs["compensated"], finished),
        budget_kills=runs["budget_kills"], budget_kill_rate=_rate(runs["budget_kills"], finished),
        approvals_decided=approvals["approval_wait_n"], approval_wait_p50=approvals["approval_wait_p50"],
        approval_wait_p95=approvals["approval_wait_p95"],
    )


def point_from(start: datetime, end: datetime, r: dict[str, Any], lat: dict[str, Any], eff: dict[str, Any],
               st: dict[str, Any], q: dict[str, Any]) -> KpiPoint:
    """A KpiPoint from each family's figures for one bucket (missing keys: nothing happened)."""
    finished, succeeded = r.get("finished", 0), r.get("succeeded", 0)
    n_steps = st.get("steps", 0)
    return KpiPoint(
        start=start, end=end, finished=finished, succeeded=succeeded, failed=r.get("failed", 0),
        cancelled=r.get("cancelled", 0), completion_rate=_rate(succeeded, finished),
        latency_p50=lat.get("latency_p50"), latency_p95=lat.get("latency_p95"),
        latency_p99=lat.get("latency_p99"), latency_net_p50=lat.get("latency_net_p50"),
        latency_net_p95=lat.get("latency_net_p95"),
        resume_success_rate=_rate(r.get("resumed_succeeded", 0), r.get("resumed", 0)),
        effect_keys=eff.get("effect_keys", 0), duplicated_effects=eff.get("duplicated", 0),
        duplicate_effect_rate=_rate(eff.get("duplicated", 0), eff.get("effect_keys", 0)),
        dedup_hits=eff.get("dedup_hits", 0),
        tokens_per_task=_per_task(float(r.get("tokens", 0)), succeeded),
        cost_per_task=_per_task(r.get("cost", Decimal(0)), succeeded),
        runs_per_minute=_per_minute(finished, start, end),
        steps_finished=n_steps, steps_per_minute=_per_minute(n_steps, start, end),
        retry_rate=_rate(st.get("retries", 0), n_steps),
        queue_wait_p50=q.get("queue_wait_p50"), queue_wait_p95=q.get("queue_wait_p95"),
        compensation_rate=_rate(r.get("compensated", 0), finished), budget_kills=r.get("budget_kills", 0),
    )
