"""Roles as groups, and the demo users make run creates one per role."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orchestrator.roles import ROLES
from orchestrator.stack import DEFAULT_DEMO_PASSWORD, ensure_demo_role_users

pytestmark = pytest.mark.django_db


def test_make_run_creates_one_user_per_role_with_its_permissions(monkeypatch):
    monkeypatch.delenv("RATCHET_DEMO_PASSWORD", raising=False)
    lines = ensure_demo_role_users()
    demo_roles = [role for role in ROLES if role != "admin"]  # the demo superuser is named admin
    assert lines == [f"{role} / {DEFAULT_DEMO_PASSWORD} ({role}, created)" for role in demo_roles]
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["approver"].has_perm("orchestrator.decide_approval")
    assert not users["approver"].has_perm("orchestrator.change_run")
    assert users["operator"].has_perm("orchestrator.change_run")
    assert not users["operator"].has_perm("orchestrator.decide_approval")
    assert users["designer"].has_perm("orchestrator.add_workflowversion")
    assert users["viewer"].get_all_permissions() == {"orchestrator.view_run", "orchestrator.view_workflow",
                                                     "designer.view_draft"}
    assert "admin" not in users and not users["operator"].has_perm("orchestrator.view_audit")
    assert all(users[role].check_password(DEFAULT_DEMO_PASSWORD) for role in demo_roles)
    assert ensure_demo_role_users() == [f"{role} / {DEFAULT_DEMO_PASSWORD} ({role})" for role in demo_roles]


def test_a_demo_user_whose_password_changed_is_kept(monkeypatch):
    monkeypatch.delenv("RATCHET_DEMO_PASSWORD", raising=False)
    get_user_model().objects.create_user("viewer", password="mine")
    assert "viewer (existing user kept, its password differs)" in ensure_demo_role_users()
    assert get_user_model().objects.get(username="viewer").check_password("mine")


def test_setup_roles_says_what_each_group_may_do():
    out = io.StringIO()
    call_command("setup_roles", stdout=out)
    assert "approver: group approvers with orchestrator.decide_approval, orchestrator.view_run" in out.getvalue()
