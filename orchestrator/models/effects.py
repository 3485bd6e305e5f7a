"""The effects ledger: one row per side effect, keyed by a stable idempotency key.

An effect belongs to the step that records it (state, visit and branch path: its ``scope``);
the same key in another step is another effect, unless it is declared shared (scope "").
Status changes only through ``orchestrator.engine.ledger``, fenced by the owning attempt.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class EffectStatus(models.TextChoices):
    INTENT = "intent", "Intent recorded"
    CONFIRMED = "confirmed", "Confirmed"
    FAILED = "failed", "Failed (not done)"
    UNCERTAIN = "uncertain", "Uncertain: an operator must decide"
    RETRY_APPROVED = "retry_approved", "Retry approved by an operator"
    COMPENSATING = "compensating", "Compensating"
    COMPENSATED = "compensated", "Compensated"
    COMPENSATION_FAILED = "compensation_failed", "Compensation failed: an operator must decide"
    NOT_COMPENSATED = "not_compensated", "Left as it is (accepted by an operator)"


UNRESOLVED_EFFECT_STATUSES = frozenset({EffectStatus.UNCERTAIN, EffectStatus.COMPENSATION_FAILED})


class Effect(models.Model):
    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="effects")
    attempt = models.ForeignKey(
        "orchestrator.StepAttempt", null=True, on_delete=models.SET_NULL, related_name="effects",
        help_text="The attempt that last recorded an intent for this effect.",
    )
    key = models.CharField(max_length=200, help_text="The handler's key, stable across retries and resumes.")
    scope = models.CharField(
        max_length=420, blank=True,
        help_text="The step that owns the effect (state#visit[/branch]); empty for a key shared across the run.",
    )
    state_name = models.CharField(max_length=100, help_text="The state that first recorded the effect.")
    sequence = models.PositiveIntegerField(default=0, help_text="The visit (step number) that first recorded it.")
    branch_path = models.CharField(max_length=300, blank=True, default="")
    queue = models.CharField(max_length=64, default="default", help_text="Compensations run on this queue.")
    status = models.CharField(max_length=24, choices=EffectStatus.choices, default=EffectStatus.INTENT)
    downstream_idempotent = models.BooleanField(
        default=False, help_text="The effect passes its idempotency key downstream, so a retry is safe."
    )
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    compensate = models.CharField(max_length=300, blank=True, help_text="Import path of the compensation.")
    executions = models.PositiveIntegerField(default=0, help_text="Times the effect function was called.")
    completed_by = models.JSONField(
        default=list, blank=True,
        help_text="Attempts whose execution is known to have happened (returned, found by a check, or "
                  "declared by an operator). Two or more is a duplicate.",
    )
    duplicates = models.PositiveIntegerField(default=0, help_text="Executions known to have happened twice.")
    unknown_retries = models.PositiveIntegerField(
        default=0, help_text="Re-executions after an execution of unknown outcome (safe only if downstream "
                             "honours the key): possible duplicates.",
    )
    dedup_hits = models.PositiveIntegerField(default=0, help_text="Re-executions the ledger prevented.")
    intent_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    compensated_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.CharField(max_length=24, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "scope", "key"], name="effect_key_unique_per_scope"),
        ]
        # Rare statuses (uncertain, compensation_*) found without a scan: the failure dashboard, the saga KPIs.
        indexes = [models.Index(fields=["status"], name="effect_status")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def shared(self) -> bool:
        return not self.scope

    @property
    def step_label(self) -> str:
        """The step that recorded the effect, as people read it: state, visit and branch."""
        branch = f" in {self.branch_path}" if self.branch_path else ""
        return f"'{self.state_name}' (step {self.sequence}{branch})"

    @property
    def idempotency_key(self) -> str:
        """The key handed downstream: unique across runs and steps, stable across attempts."""
        scope = self.scope.replace("#", "-").replace("/", "-")
        return f"ratchet-{self.run_id}-{scope}-{self.key}" if scope else f"ratchet-{self.run_id}-{self.key}"
