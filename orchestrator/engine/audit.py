"""Write the audit trail: one entry per action a person takes, recorded where the change is made
(the engine functions, the token model), inside the transaction that makes it, so the pages,
the JSON API and the commands all leave the same trail, and a refused or rolled-back change
leaves none.

Actions without a person (a timeout deciding, a parent run starting its child, the load
generator) are not audited: the run's event history has them.

Where the request came from is known to the web process only: its middleware
(orchestrator/middleware.py) sets the client's address for the length of the request, and
``record`` adds it to the entry.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ..models import AuditAction, AuditEntry, Run
from . import clock

_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("ratchet_audit_address", default=None)


def request_address(address: str | None) -> contextvars.Token[str | None]:
    """Entries recorded from now on (in this context) come from ``address``; ``reset`` undoes it."""
    return _address.set(address)


def reset_address(token: contextvars.Token[str | None]) -> None:
    _address.reset(token)


def _person(user: Any) -> Any:
    return user if getattr(user, "pk", None) is not None and getattr(user, "is_authenticated", False) else None


def record(action: AuditAction | str, user: Any, *, run: Run | None = None, target: Any = None,
           workflow: str = "", detail: dict[str, Any] | None = None, actor_name: str = "",
           address: str | None = None) -> AuditEntry | None:
    """Record that ``user`` did ``action`` (to ``target``: a model instance, or a (type, id)
    pair; to ``run``). Returns the entry, or None when no person acted (no user and no
    ``actor_name``, as for a failed sign-in). Call it inside the transaction of the change."""
    person = _person(user)
    name = person.get_username() if person is not None else actor_name
    if not name:
        return None
    target_type, target_id = _target(target if target is not None else run)
    if run is not None and not workflow:
        workflow = run.workflow.name
    return AuditEntry.objects.create(
        at=clock.now(), actor=person, actor_name=name[:150], action=str(action), target_type=target_type,
        target_id=target_id, run=run, workflow_name=workflow[:100], detail=detail or {},
        address=address or _address.get())


def _target(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        kind, key = target
        return str(kind)[:40], str(key)[:100]
    return target._meta.model_name[:40], str(target.pk)[:100]
