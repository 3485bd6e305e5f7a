"""Approval requests: a line of execution waits for a person's decision (an ``approval`` state,
or a gate on a transition), holding no worker and no lease.

The database holds everything an approval needs (who may decide, the due time, a claim, the
decision), so a request survives worker restarts and Redis flushes, and the sweeper applies
timeouts and escalations from it. A decision that arrives before the run reaches the approval
is a request decided ahead (no attempt yet), applied when the run gets there.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import models


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DECIDED = "decided", "Decided"
    CANCELLED = "cancelled", "Cancelled (the run or branch stopped)"


class ApprovalRequest(models.Model):
    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="approvals")
    attempt = models.OneToOneField(
        "orchestrator.StepAttempt", null=True, blank=True, on_delete=models.CASCADE, related_name="approval",
        help_text="The waiting attempt; empty for a decision made before the run got here.",
    )
    state_name = models.CharField(max_length=100, help_text="The approval state, or the gated state.")
    branch_path = models.CharField(max_length=300, blank=True, default="")
    gate = models.BooleanField(default=False, help_text="A gate on the state's outgoing transition.")
    leads_to = models.CharField(max_length=100, blank=True, help_text="A gate's target ('' = the line ends).")
    edge = models.CharField(max_length=20, blank=True,
                            help_text="Which transition a gate holds: '' (the state's), 'choice:<i>' or 'catch:<i>'.")
    title = models.CharField(max_length=200, blank=True)
    outcomes = models.JSONField(default=list, blank=True, help_text="[[outcome, state or ''], ...]")
    proposed = models.JSONField(null=True, blank=True, help_text="What the reviewer is shown.")
    edit_key = models.CharField(max_length=100, blank=True, help_text="Context key a reviewer may replace.")
    groups = models.ManyToManyField(Group, blank=True, related_name="+")
    permissions = models.ManyToManyField(Permission, blank=True, related_name="+")
    four_eyes = models.BooleanField(default=True, help_text="The run's starter may not decide.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    due_at = models.DateTimeField(null=True, blank=True)
    on_timeout = models.CharField(max_length=100, blank=True, help_text="What the sweeper does when it is due.")
    escalation_level = models.PositiveSmallIntegerField(default=0)
    escalated_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    outcome = models.CharField(max_length=100, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    edited = models.BooleanField(default=False)
    edited_data = models.JSONField(null=True, blank=True)
    timed_out = models.BooleanField(default=False, help_text="Decided by the timeout, not a person.")
    applied_at = models.DateTimeField(null=True, blank=True, help_text="When the decision moved the run on.")

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status", "due_at"], name="approval_status_due"),
            models.Index(fields=["status", "decided_at"], name="approval_status_decided"),
            models.Index(fields=["run", "state_name"], name="approval_run_state"),
        ]
        permissions = [("decide_approval", "Can decide approval requests")]

    def __str__(self) -> str:
        return f"{self.title or self.state_name} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == ApprovalStatus.PENDING

    @property
    def outcome_names(self) -> list[str]:
        return [name for name, _ in self.outcomes]
