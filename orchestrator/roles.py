"""Roles as Django groups, with the permissions each needs. Migration 0013 creates them on
every deployment; ``manage.py setup_roles`` sets them again (after a hand edit in the admin, or
for a test database), and ``make run`` creates one demo user per role.

| role     | group     | may                                                                 |
|----------|-----------|---------------------------------------------------------------------|
| viewer   | viewers   | see runs, workflows, drafts, dashboards (every role may)            |
| approver | approvers | + decide approvals (those whose definition lets the approver group) |
| operator | operators | + start, cancel, redrive runs, decide effects, reset breakers        |
| designer | designers | + create and edit drafts, publish versions, start runs              |
| admin    | admins    | all of the above + read the audit trail                              |

Anyone signed in manages their own API tokens; nobody sees another person's. Managing users
and groups stays with Django's superusers and staff (the admin site)."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEW = ("orchestrator.view_run", "orchestrator.view_workflow", "designer.view_draft")
APPROVE = ("orchestrator.decide_approval",)
OPERATE = ("orchestrator.add_run", "orchestrator.change_run", "orchestrator.change_effect",
           "orchestrator.reset_breaker")
DESIGN = ("orchestrator.add_workflow", "orchestrator.change_workflow", "orchestrator.add_workflowversion",
          "orchestrator.add_run", "designer.add_draft", "designer.change_draft")
AUDIT = ("orchestrator.view_audit",)


def _unique(*parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for part in parts for name in part))


# role -> (group name, "app_label.codename" permissions)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "approver": ("approvers", _unique(APPROVE, VIEW)),
    "operator": ("operators", _unique(OPERATE, VIEW)),
    "designer": ("designers", _unique(DESIGN, VIEW)),
    "viewer": ("viewers", VIEW),
    "admin": ("admins", _unique(AUDIT, OPERATE, DESIGN, APPROVE, VIEW)),
}


def ensure_role_groups() -> dict[str, Group]:
    """Each role's group with exactly its permissions (safe to run again); role -> group."""
    groups = {}
    for role, (name, permissions) in ROLES.items():
        group = Group.objects.get_or_create(name=name)[0]
        query = Q()
        for permission in permissions:
            app, code = permission.split(".", 1)
            query |= Q(content_type__app_label=app, codename=code)
        found = list(Permission.objects.filter(query))
        if len(found) != len(permissions):
            raise LookupError(f"role {role}: some of {', '.join(permissions)} do not exist (migrate first)")
        group.permissions.set(found)
        groups[role] = group
    return groups
