"""Sign-in throttling against password guessing: after LOGIN_MAX_FAILURES failed sign-ins for one
account from one address within LOGIN_LOCK_SECONDS, that account refuses sign-ins from that
address until the window has passed, even with the right password, and says how long to wait.
The count is a Redis key that expires with its window, shared by every web process; a success
clears it. Without Redis, sign-ins are not throttled (and that is logged).

Every failed sign-in, throttled or not, is also an entry of the audit trail (the name typed,
the address), in the database."""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from .conf import ratchet_setting
from .engine import audit
from .engine.dispatch import redis_connection
from .middleware import client_address
from .models import AuditAction

logger = logging.getLogger("ratchet.accounts")
KEY = "ratchet:login-failures:{}"


def _key(username: str, request: HttpRequest | None) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    who = f"{username.strip().lower()}|{address}"
    return KEY.format(hashlib.sha256(who.encode("utf-8")).hexdigest()[:32])


def wait_seconds(username: str, request: HttpRequest | None) -> int:
    """Seconds before this account may try again from this address (0: now)."""
    try:
        connection = redis_connection()
        key = _key(username, request)
        failures = int(connection.get(key) or 0)
        if failures < int(ratchet_setting("LOGIN_MAX_FAILURES")):
            return 0
        return max(int(connection.ttl(key)), 1)
    except Exception:
        logger.warning("sign-in throttling skipped: Redis did not answer", exc_info=True)
        return 0


@receiver(user_login_failed, dispatch_uid="ratchet.accounts.count_failure")
def count_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                  **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))
    _audit_failure(username, request)
    logger.warning("failed sign-in for %r from %s", username[:150],
                   request.META.get("REMOTE_ADDR", "?") if request is not None else "?")
    try:
        connection = redis_connection()
        key = _key(username, request)
        with connection.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, math.ceil(float(ratchet_setting("LOGIN_LOCK_SECONDS"))), nx=True)
            pipe.execute()
    except Exception:
        logger.warning("failed sign-in not counted: Redis did not answer", exc_info=True)


def _audit_failure(username: str, request: HttpRequest | None, **detail: Any) -> None:
    audit.record(AuditAction.LOGIN_FAILED, None, actor_name=username.strip()[:150] or "(no name)",
                 target=("user", username.strip()[:100]), detail=detail, address=client_address(request))


@receiver(user_logged_in, dispatch_uid="ratchet.accounts.clear_failures")
def clear_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    try:
        redis_connection().delete(_key(user.get_username(), request))
    except Exception:
        logger.warning("failed sign-ins not cleared: Redis did not answer", exc_info=True)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's sign-in form, refusing an account that failed too often from this address."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        wait = wait_seconds(username, self.request)
        if wait:
            _audit_failure(username, self.request, throttled=True)
            minutes = math.ceil(wait / 60)
            plural = "s" if minutes > 1 else ""
            raise forms.ValidationError(
                f"Too many failed sign-ins for this account. Try again in {minutes} minute{plural}, "
                "or ask an administrator to reset your password.", code="throttled")
        return super().clean()
