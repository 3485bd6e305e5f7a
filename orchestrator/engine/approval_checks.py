"""The validator's checks of approval states and gates (see approval_spec.py)."""

from __future__ import annotations

from typing import Any

from .approval_spec import ApprovalSpec, spec_findings


def approval_findings(state: Any) -> list[Any]:
    from .validator import Finding

    findings = []
    edges = [(rule.gate, True) for rule in (*state.choices, *state.catch)]
    for spec, gate in ((state.approval, False), (state.gate, True), *edges):
        if spec is None:
            continue
        findings += [Finding("approval", problem, state.name) for problem in spec_findings(spec, gate=gate)]
        findings += [Finding("approval_permission", problem, state.name) for problem in _unknown_permissions(spec)]
    return findings


def _unknown_permissions(spec: ApprovalSpec) -> list[str]:
    """Named permissions must exist (a typo would let nobody decide). Without a database (a
    definition checked offline) this is left to run time."""
    from django.contrib.auth.models import Permission
    from django.db import DatabaseError

    named = set(spec.approvers.permissions)
    if spec.escalation is not None:
        named |= set(spec.escalation.approvers.permissions)
    if not named:
        return []
    try:
        known = {f"{app}.{code}" for app, code in Permission.objects.filter(
            codename__in=[name.split(".", 1)[1] for name in named]).values_list("content_type__app_label", "codename")}
    except DatabaseError:
        return []
    return [f"permission '{name}' does not exist; name an existing one (app_label.codename), or a group"
            for name in sorted(named - known)]
