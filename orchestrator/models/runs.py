"""Runs and step attempts: the checkpoints of durable execution.

Status fields are changed only by ``orchestrator.engine.transitions``, which checks the
source status and appends an Event in the same transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from .context import ContextEntry, assemble
from .workflows import Workflow, WorkflowVersion


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for a person"
    PAUSED = "paused", "Paused: an operator must decide"
    COMPENSATING = "compensating", "Compensating"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    COMPENSATED = "compensated", "Cancelled, its effects undone"


TERMINAL_RUN_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPENSATED})
ACTIVE_RUN_STATUSES = frozenset(
    {RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED, RunStatus.COMPENSATING}
)


class PauseReason(models.TextChoices):
    UNCERTAIN_EFFECT = "uncertain_effect", "An effect may or may not have happened"
    COMPENSATION_FAILED = "compensation_failed", "A compensation failed"


class FailureMode(models.TextChoices):
    """Why something failed; the failure dashboard groups by it (DESIGN.md section 5)."""

    HANDLER_ERROR = "handler_error", "Handler error"
    TIMEOUT = "timeout", "Timeout"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    DUPLICATE_SIDE_EFFECT = "duplicate_side_effect", "Duplicate side effect"
    LOST_PROGRESS = "lost_progress", "Lost progress on crash"
    CONTEXT_LOSS = "context_loss", "Context loss at handoff"
    COORDINATION_DEADLOCK = "coordination_deadlock", "Coordination deadlock"
    COST_EXPLOSION = "cost_explosion", "Cost explosion"
    CONFLICTING_AGGREGATION = "conflicting_aggregation", "Conflicting aggregation"
    THROTTLING = "throttling", "Shared-tool throttling"


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    input = models.JSONField(default=dict, blank=True)
    # What the run started with (its input); the steps' outputs are ContextEntry rows. Read
    # ``context`` (assembled) rather than this, except to start a run.
    context_base = models.JSONField(db_column="context", default=dict, blank=True,
                                    help_text="The run's starting context; steps add entries to it.")
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    failure_mode = models.CharField(max_length=32, choices=FailureMode.choices, blank=True)
    failed_attempt = models.ForeignKey(
        "orchestrator.StepAttempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The attempt whose failure failed the run: a redrive restarts its visit.",
    )
    pause_reason = models.CharField(max_length=32, choices=PauseReason.choices, blank=True)
    # Where and why the run last failed, kept through a redrive, so the failure dashboard can
    # group runs by cause and watch a redriven cluster drain.
    failure_state = models.CharField(max_length=100, blank=True)
    failure_fingerprint = models.CharField(max_length=16, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    # Budgets used so far (limits come from the pinned definition).
    steps_used = models.PositiveIntegerField(default=0)
    tokens_used = models.BigIntegerField(default=0)
    depth_used = models.PositiveIntegerField(default=0, help_text="Handoffs between agents so far.")
    cost_used = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    resume_count = models.PositiveIntegerField(default=0)
    redrive_count = models.PositiveIntegerField(default=0)
    # Time spent waiting for people (approvals, operator decisions), excluded from latency KPIs.
    human_wait_seconds = models.FloatField(default=0)
    # A child run (a sub-workflow state of another run): its parent waits on it, owns its
    # cancellation and its effects, and lends it what is left of its budgets.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    parent_attempt = models.ForeignKey(
        "orchestrator.StepAttempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_runs",
        help_text="The parent's attempt that waits for this run.",
    )
    budget_caps = models.JSONField(
        default=dict, blank=True, help_text="Limits lent by the parent run (max_tokens, max_cost, max_depth).")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="run_status_created"),
            models.Index(fields=["status", "finished_at"], name="run_status_finished"),
            models.Index(fields=["workflow", "created_at"], name="run_workflow_created"),
            # The runs list's keyset (newest first, then id) and the KPI "started in" filter.
            models.Index(fields=["created_at", "id"], name="run_created_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow.name} run {str(self.id)[:8]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        pending = self.take_pending_context()
        if pending:
            ContextEntry.objects.bulk_create([
                ContextEntry(run_id=self.pk, key=key, attempt_id=attempt.pk if attempt is not None else None,
                             value=None if attempt is not None else value)
                for key, value, attempt in pending])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def context(self) -> dict[str, Any]:
        """Run input plus outputs of completed steps, assembled on first read (see models/context.py)."""
        cached = self.__dict__.get("_context")
        if cached is None:
            saved = not self._state.adding
            cached = self.__dict__["_context"] = assemble(self.context_base, self.pk) if saved else dict(
                self.context_base)
            cached.update({key: value for key, value, _ in self.__dict__.get("_context_pending", ())})
        return cached

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        """A new run's starting context (a run under way adds to it with ``put_context``)."""
        self.context_base = value
        self.__dict__["_context"] = dict(value)

    def put_context(self, key: str, value: Any, attempt: Any = None) -> None:
        """Set ``key`` in the context; written as one entry when the run is next saved. With
        ``attempt``, the value is that attempt's output and is not stored twice."""
        if "_context" in self.__dict__:
            self.__dict__["_context"][key] = value
        self.__dict__.setdefault("_context_pending", []).append((key, value, attempt))

    def take_pending_context(self) -> list[Any]:
        return self.__dict__.pop("_context_pending", [])

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.pop("_context", None)
        super().refresh_from_db(*args, **kwargs)


class AttemptKind(models.TextChoices):
    STEP = "step", "Step"
    COMPENSATION = "compensation", "Compensation"
    GATE = "gate", "Approval gate on a transition"


class AttemptStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for a person"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost (resumed)"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_ATTEMPT_STATUSES = frozenset({AttemptStatus.SCHEDULED, AttemptStatus.RUNNING, AttemptStatus.WAITING})


class StepAttempt(models.Model):
    """One try of one state in one run. A succeeded attempt is the step's checkpoint."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    kind = models.CharField(max_length=16, choices=AttemptKind.choices, default=AttemptKind.STEP)
    state_name = models.CharField(max_length=100)
    # "" on the main path; "<parallel state>/<branch>[/...]" inside parallel branches and maps.
    branch_path = models.CharField(max_length=300, blank=True, default="")
    sequence = models.PositiveIntegerField(help_text="Step number of this state's visit in the run.")
    attempt = models.PositiveSmallIntegerField(default=1, help_text="1 for the first try of this visit.")
    status = models.CharField(max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.SCHEDULED)
    queue = models.CharField(max_length=64, default="default")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    failure_mode = models.CharField(max_length=32, choices=FailureMode.choices, blank=True)
    resumed_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    effect = models.ForeignKey(
        "orchestrator.Effect", null=True, blank=True, on_delete=models.CASCADE, related_name="compensations"
    )
    line = models.ForeignKey(
        "orchestrator.Line", null=True, blank=True, on_delete=models.CASCADE, related_name="attempts",
        help_text="The branch this attempt runs in; empty on the main line.",
    )
    # Dispatch and claim (DESIGN.md section 4).
    not_before = models.DateTimeField(null=True, blank=True, help_text="Backoff or timer: not to run before.")
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0)
    claim_deadline_seconds = models.FloatField(
        null=True, blank=True,
        help_text="Seconds from a claim to the first deadline, when nothing was to be checked at the claim as the "
                  "attempt was scheduled (no rate limit, circuit breaker or guarded tools): its job then claims "
                  "it in one statement.",
    )
    claim_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(null=True, blank=True)
    timeout_at = models.DateTimeField(null=True, blank=True)
    # Timings and usage.
    scheduled_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        ordering = ["run", "id"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="attempt_status_lease"),
            models.Index(fields=["status", "dispatched_at"], name="attempt_status_dispatched"),
            models.Index(fields=["run", "state_name"], name="attempt_run_state"),
            # The KPI dashboard's step figures (finished in a window) and queue wait (claimed in it).
            models.Index(fields=["finished_at"], name="attempt_finished"),
            models.Index(fields=["claimed_at"], name="attempt_claimed"),
        ]

    def __str__(self) -> str:
        return f"{self.state_name}#{self.sequence}.{self.attempt} ({self.status})"
