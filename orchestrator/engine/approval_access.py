"""Who may decide an approval: the groups and permissions its definition names (or the
approval permission), never the run's starter under four-eyes, superusers always otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Q, QuerySet

from ..models import ApprovalRequest, ApprovalStatus
from .approval_spec import Approvers

FOUR_EYES = "four-eyes: you started this run, so another person must decide"


def refusal(user: Any, *, groups: Iterable[str], permissions: Iterable[str], four_eyes: bool,
            requested_by_id: Any) -> str | None:
    """Why ``user`` may not decide (None: they may)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return "sign in as a person who may decide"
    if four_eyes and requested_by_id is not None and user.pk == requested_by_id:
        return FOUR_EYES
    if user.is_superuser:
        return None
    groups, permissions = list(groups), list(permissions)
    if groups and user.groups.filter(name__in=groups).exists():
        return None
    if any(user.has_perm(name) for name in permissions):
        return None
    return known_refusal(user, groups=groups, permissions=permissions, four_eyes=four_eyes,
                         requested_by_id=requested_by_id)


def known_refusal(user: Any, *, groups: Iterable[str], permissions: Iterable[str], four_eyes: bool,
                  requested_by_id: Any) -> str:
    """The words of ``refusal`` for a user already known not to be among the deciders (the
    inbox knows it from ``decidable_by``): no query."""
    if four_eyes and requested_by_id is not None and user.pk == requested_by_id:
        return FOUR_EYES
    return f"you are not among those who may decide ({describe(groups, permissions)})"


def request_refusal(user: Any, request: ApprovalRequest) -> str | None:
    groups, permissions = deciders(request)
    return refusal(user, groups=groups, permissions=permissions, four_eyes=request.four_eyes,
                   requested_by_id=request.requested_by_id)


def deciders(request: ApprovalRequest) -> tuple[list[str], list[str]]:
    """The group names and permission names ("app.codename") that may decide ``request``."""
    groups = sorted(g.name for g in request.groups.all())
    permissions = sorted(f"{p.content_type.app_label}.{p.codename}"
                         for p in request.permissions.select_related("content_type"))
    return groups, permissions


def describe(groups: Iterable[str], permissions: Iterable[str]) -> str:
    named = [f"group {g}" for g in groups] + [f"permission {p}" for p in permissions]
    return " or ".join(named) or "superusers only"


def assign(request: ApprovalRequest, approvers: Approvers) -> None:
    """Let ``approvers`` decide ``request`` (added to those who may already). A group the
    definition names is created, empty, if it does not exist yet: an administrator adds its
    members, and the pending requests become theirs."""
    for name in approvers.groups:
        request.groups.add(Group.objects.get_or_create(name=name)[0])
    wanted = [name.split(".", 1) for name in approvers.effective_permissions]
    if not wanted:
        return
    query = Q()
    for app, code in wanted:
        query |= Q(content_type__app_label=app, codename=code)
    request.permissions.add(*Permission.objects.filter(query))


def decidable_by(user: Any) -> QuerySet[ApprovalRequest]:
    """Pending requests ``user`` may decide (one query: the inbox and its badge)."""
    pending = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
    if not user.is_superuser:
        by_group = ApprovalRequest.groups.through.objects.filter(group__user=user)
        by_permission = ApprovalRequest.permissions.through.objects.filter(
            Q(permission__user=user) | Q(permission__group__user=user))
        pending = pending.filter(Q(pk__in=by_group.values("approvalrequest_id"))
                                 | Q(pk__in=by_permission.values("approvalrequest_id")))
    return pending.exclude(four_eyes=True, requested_by=user)
