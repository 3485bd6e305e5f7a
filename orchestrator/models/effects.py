"""The effects ledger: one row per side effect, keyed per run by a stable idempotency key."""

from __future__ import annotations

from django.db import models


class EffectStatus(models.TextChoices):
    INTENT = "intent", "Intent recorded"
    CONFIRMED = "confirmed", "Confirmed"
    FAILED = "failed", "Failed (not done)"
    UNCERTAIN = "uncertain", "Uncertain: an operator must decide"
    RETRY_APPROVED = "retry_approved", "Retry approved by an operator"
    COMPENSATING = "compensating", "Compensating"
    COMPENSATED = "compensated", "Compensated"
    COMPENSATION_FAILED = "compensation_failed", "Compensation failed"


class Effect(models.Model):
    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="effects")
    attempt = models.ForeignKey(
        "orchestrator.StepAttempt", null=True, on_delete=models.SET_NULL, related_name="effects",
        help_text="The attempt that last recorded an intent for this effect.",
    )
    key = models.CharField(max_length=200, help_text="The handler's key, stable across retries and resumes.")
    state_name = models.CharField(max_length=100)
    status = models.CharField(max_length=24, choices=EffectStatus.choices, default=EffectStatus.INTENT)
    downstream_idempotent = models.BooleanField(
        default=False, help_text="The effect passes its idempotency key downstream, so a retry is safe."
    )
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    compensate = models.CharField(max_length=300, blank=True, help_text="Import path of the compensation.")
    executions = models.PositiveIntegerField(default=0, help_text="Times the effect function was called.")
    dedup_hits = models.PositiveIntegerField(default=0, help_text="Re-executions the ledger prevented.")
    intent_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    compensated_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="effect_key_unique_per_run")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """The key handed downstream: unique across runs, stable across attempts."""
        return f"ratchet-{self.run_id}-{self.key}"
