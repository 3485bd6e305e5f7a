"""The audit trail: who did what, when, to what, from where. One row per person's action
(publish, start, cancel, approve, a token created, a failed sign-in, ...), written in the same
transaction as the change it records; append-only, like a run's events."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from .events import AppendOnlyError


class AuditAction(models.TextChoices):
    PUBLISH = "publish", "published a version"
    START = "start", "started a run"
    CANCEL = "cancel", "cancelled a run"
    COMPENSATE = "compensate", "cancelled a run and undid its effects"
    REDRIVE = "redrive", "redrove a run"
    APPROVE = "approve", "approved"
    REJECT = "reject", "rejected"
    DECIDE_APPROVAL = "decide_approval", "decided an approval"
    DECIDE_EFFECT = "decide_effect", "decided an effect"
    RESET_BREAKER = "reset_breaker", "reset a circuit breaker"
    TOKEN_CREATED = "token_created", "created an API token"
    TOKEN_REVOKED = "token_revoked", "revoked an API token"
    LOGIN_FAILED = "login_failed", "failed to sign in"


class AuditEntry(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    # The name as it was (kept when the user is deleted; for a failed sign-in, the name typed).
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    run = models.ForeignKey("orchestrator.Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="audit_entries")
    workflow_name = models.CharField(max_length=100, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["action", "at"], name="audit_action_at"),
                   models.Index(fields=["actor_name", "at"], name="audit_actor_at")]
        # The trail is never added to, changed or deleted by hand: only viewing it is a permission.
        # reset_breaker lives here for want of a model (breakers are kept in Redis).
        default_permissions = ()
        permissions = [("view_audit", "Can view the audit trail"),
                       ("reset_breaker", "Can reset a circuit breaker")]

    def __str__(self) -> str:
        return f"{self.actor_name or 'someone'} {self.get_action_display()} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Audit entries are append-only")
        super().save(*args, **kwargs)
