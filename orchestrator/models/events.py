"""The append-only history of a run. Timelines, audit and KPIs read it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class EventKind(models.TextChoices):
    RUN_STARTED = "run_started", "Run started"
    RUN_SUCCEEDED = "run_succeeded", "Run succeeded"
    RUN_FAILED = "run_failed", "Run failed"
    RUN_CANCELLED = "run_cancelled", "Run cancelled"
    RUN_COMPENSATED = "run_compensated", "Run cancelled and its effects undone"
    RUN_PAUSED = "run_paused", "Run paused"
    RUN_RESUMED = "run_resumed", "Run resumed by an operator"
    RUN_REDRIVEN = "run_redriven", "Run redriven"
    STEP_SCHEDULED = "step_scheduled", "Step scheduled"
    STEP_DISPATCHED = "step_dispatched", "Step dispatched again"
    STEP_CLAIMED = "step_claimed", "Step claimed"
    STEP_SUCCEEDED = "step_succeeded", "Step succeeded"
    STEP_FAILED = "step_failed", "Step failed"
    STEP_RETRIED = "step_retried", "Step retried"
    STEP_CAUGHT = "step_caught", "Error caught"
    STEP_TIMED_OUT = "step_timed_out", "Step timed out"
    STEP_LOST = "step_lost", "Step lost"
    STEP_RESUMED = "step_resumed", "Step resumed"
    RESULT_DISCARDED = "result_discarded", "Late result discarded (fenced)"
    CHOICE_TAKEN = "choice_taken", "Choice taken"
    WAIT_STARTED = "wait_started", "Timer started"
    EFFECT_INTENT = "effect_intent", "Effect intent recorded"
    EFFECT_CONFIRMED = "effect_confirmed", "Effect confirmed"
    EFFECT_FAILED = "effect_failed", "Effect failed"
    EFFECT_DEDUP_HIT = "effect_dedup_hit", "Effect dedup hit"
    EFFECT_UNCERTAIN = "effect_uncertain", "Effect uncertain"
    EFFECT_RETRIED = "effect_retried", "Uncertain effect retried"
    EFFECT_DECIDED = "effect_decided", "Uncertain effect decided"
    EFFECT_CHECKED = "effect_checked", "Uncertain effect checked downstream"
    EFFECT_LATE_RESULT = "effect_late_result", "Late effect result (fenced)"
    EFFECT_DUPLICATED = "effect_duplicated", "Effect executed twice"
    COMPENSATION_STARTED = "compensation_started", "Compensation started"
    COMPENSATION_DONE = "compensation_done", "Compensation done"
    COMPENSATION_FAILED = "compensation_failed", "Compensation failed"
    BUDGET_EXCEEDED = "budget_exceeded", "Budget exceeded"
    APPROVAL_REQUESTED = "approval_requested", "Approval requested"
    APPROVAL_DECIDED = "approval_decided", "Approval decided"
    APPROVAL_DECIDED_AHEAD = "approval_decided_ahead", "Approval decided ahead (kept until the run gets there)"
    APPROVAL_CLAIMED = "approval_claimed", "Approval claimed by a reviewer"
    APPROVAL_RELEASED = "approval_released", "Approval claim released"
    APPROVAL_ESCALATED = "approval_escalated", "Approval escalated"
    APPROVAL_CANCELLED = "approval_cancelled", "Approval request withdrawn"
    THROTTLED = "throttled", "Throttled"
    CIRCUIT_OPEN = "circuit_open", "Held back: the handler's circuit breaker is open"
    BREAKER_OPENED = "breaker_opened", "Circuit breaker opened"
    BREAKER_CLOSED = "breaker_closed", "Circuit breaker closed"
    BRANCHES_STARTED = "branches_started", "Parallel branches started"
    BRANCH_FINISHED = "branch_finished", "Branch finished"
    BRANCH_PAUSED = "branch_paused", "Branch paused: an operator must decide"
    BRANCH_RESUMED = "branch_resumed", "Branch resumed by an operator"
    JOINED = "joined", "Branches joined"
    JOIN_FAILED = "join_failed", "Join failed"
    AGGREGATION_CONFLICT = "aggregation_conflict", "Branch outputs disagreed"
    QUEUE_UNSERVED = "queue_unserved", "No live worker reads the queue"
    MODEL_ANSWERED = "model_answered", "Model answered"
    MODEL_REPLAYED = "model_replayed", "Model answer replayed (not paid again)"
    ROUTE_TAKEN = "route_taken", "Agent picked a route"
    HANDED_OFF = "handed_off", "Handed off to another agent"
    CHILD_STARTED = "child_started", "Sub-workflow run started"
    CHILD_FINISHED = "child_finished", "Sub-workflow run finished"


class AppendOnlyError(Exception):
    pass


class Event(models.Model):
    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="events")
    attempt = models.ForeignKey(
        "orchestrator.StepAttempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    state_name = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["kind", "created_at"], name="event_kind_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.state_name}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyError("Events are append-only")
