"""Per-user API tokens for programs. The secret is shown once, when created; only its SHA-256 is
kept, with a short prefix to tell tokens apart on the user's page."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

PREFIX = "rt_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)  # the first characters of the secret, to recognise it
    hashed = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    @classmethod
    def issue(cls, user: object, name: str, expires_at: object = None) -> tuple[ApiToken, str]:
        """A new token and its secret (shown once; never stored)."""
        from ..engine import audit
        from .audit import AuditAction

        secret = PREFIX + secrets.token_urlsafe(32)
        with transaction.atomic():
            token = cls.objects.create(user=user, name=name, prefix=secret[:10], hashed=digest(secret),
                                       expires_at=expires_at)
            audit.record(AuditAction.TOKEN_CREATED, user, target=token,
                         detail={"name": name, "prefix": token.prefix,
                                 "expires_at": expires_at.isoformat() if expires_at else None})
        return token, secret

    def revoke(self, by: object) -> bool:
        """Revoke the token (``by``: who did it); False when it was already revoked."""
        from ..engine import audit
        from .audit import AuditAction

        with transaction.atomic():
            changed = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
            if changed:
                audit.record(AuditAction.TOKEN_REVOKED, by, target=self,
                             detail={"name": self.name, "prefix": self.prefix, "owner": self.user.get_username()})
        self.refresh_from_db(fields=["revoked_at"])
        return bool(changed)

    @classmethod
    def user_for(cls, secret: str) -> object | None:
        """The user a secret belongs to, if it is active (and note its use); else None."""
        token = cls.objects.select_related("user").filter(hashed=digest(secret)).first()
        if token is None or not token.is_active or not token.user.is_active:
            return None
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user
