"""Helpers of ``manage.py run_stack`` (``make run``): the demo login and the web port."""

from __future__ import annotations

import os
import socket

from django.contrib.auth import get_user_model

DEMO_USER = "admin"
DEFAULT_DEMO_PASSWORD = "ratchet-demo"
HOST = "127.0.0.1"


def ensure_demo_user() -> str:
    """Create the demo superuser if missing (an existing one is kept); return how to log in."""
    from_env = os.environ.get("RATCHET_DEMO_PASSWORD")
    password = from_env or DEFAULT_DEMO_PASSWORD
    shown = "(the password in RATCHET_DEMO_PASSWORD)" if from_env else password
    users = get_user_model().objects
    user = users.filter(username=DEMO_USER).first()
    if user is None:
        users.create_superuser(DEMO_USER, email="", password=password)
        return f"{DEMO_USER} / {shown} (demo superuser, created)"
    if user.check_password(password):
        return f"{DEMO_USER} / {shown}"
    return f"{DEMO_USER} (existing user kept, its password differs; `manage.py changepassword {DEMO_USER}`)"


def ensure_demo_role_users() -> list[str]:
    """One demo user per role (approver, operator, designer, viewer) in its role's group, so
    four-eyes can be tried: start a refund as one, approve it as another. Existing users are
    kept. Their password is the demo password; returns one "user / password (role)" line each.
    The admin role has none: the demo superuser ``admin`` sees everything, the audit trail too."""
    from .roles import ensure_role_groups

    from_env = os.environ.get("RATCHET_DEMO_PASSWORD")
    password = from_env or DEFAULT_DEMO_PASSWORD
    shown = "(the password in RATCHET_DEMO_PASSWORD)" if from_env else password
    users = get_user_model().objects
    lines = []
    for role, group in ensure_role_groups().items():
        if role == DEMO_USER:
            continue
        user = users.filter(username=role).first()
        if user is None:
            user = users.create_user(role, password=password)
            user.groups.add(group)
            lines.append(f"{role} / {shown} ({role}, created)")
        elif user.check_password(password):
            user.groups.add(group)
            lines.append(f"{role} / {shown} ({role})")
        else:
            lines.append(f"{role} (existing user kept, its password differs)")
    return lines


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver does
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def answers(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
        return True
    except OSError:
        return False

