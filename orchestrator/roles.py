"""Roles as Django groups (DESIGN.md: designer, operator, approver, viewer), with the
permissions each needs. ``manage.py setup_roles`` creates or updates them; ``make run`` also
creates one demo user per role."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

# role -> (group name, "app_label.codename" permissions)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "approver": ("approvers", ("orchestrator.decide_approval", "orchestrator.view_run")),
    "operator": ("operators", ("orchestrator.add_run", "orchestrator.change_run", "orchestrator.change_effect",
                               "orchestrator.view_run")),
    "designer": ("designers", ("orchestrator.add_workflow", "orchestrator.change_workflow",
                               "orchestrator.add_workflowversion", "orchestrator.add_run", "orchestrator.view_run",
                               "designer.add_draft", "designer.change_draft", "designer.view_draft")),
    "viewer": ("viewers", ("orchestrator.view_run",)),
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
