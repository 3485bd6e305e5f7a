"""The role groups come from a migration, with their permissions, on a fresh database (where
Django has not created any permission yet when migrations run) and on an existing one."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from orchestrator.roles import ROLES, ensure_role_groups

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("orchestrator.migrations.0013_audit_and_roles")


@pytest.fixture(autouse=True)
def _fresh_content_type_cache():
    """These tests remake content types (rolled back after): forget the ids cached meanwhile."""
    yield
    ContentType.objects.clear_cache()


def permissions_of(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def run_the_migration() -> None:
    """The migration's data step, with the apps as they are at that migration."""
    state = MigrationExecutor(connection).loader.project_state(("orchestrator", "0013_audit_and_roles"))
    with connection.schema_editor() as editor:
        MIGRATION.make_groups(state.apps, editor)
    ContentType.objects.clear_cache()


def test_the_migration_makes_every_role_group_with_its_permissions_on_a_fresh_database():
    ContentType.objects.filter(app_label__in=["orchestrator", "designer"]).delete()  # and their permissions
    Group.objects.all().delete()
    ContentType.objects.clear_cache()
    run_the_migration()
    groups = {group.name: permissions_of(group) for group in Group.objects.all()}
    assert groups == {name: set(permissions) for name, permissions in ROLES.values()}


def test_the_migration_resets_an_existing_group_to_its_permissions_and_keeps_its_members(person):
    viewers = Group.objects.get_or_create(name="viewers")[0]
    viewers.permissions.set([Permission.objects.get(codename="change_run")])
    vera = person("vera")
    vera.groups.add(viewers)
    run_the_migration()
    assert permissions_of(Group.objects.get(name="viewers")) == set(ROLES["viewer"][1])
    assert list(vera.groups.values_list("name", flat=True)) == ["viewers"]


def test_setup_roles_and_the_migration_agree_on_every_role():
    assert {name: set(permissions) for name, permissions in MIGRATION.GROUPS.items()} == {
        name: set(permissions) for name, permissions in ROLES.values()}


@pytest.mark.parametrize(("role", "may", "may_not"), [
    ("viewer", ["orchestrator.view_run", "orchestrator.view_workflow", "designer.view_draft"],
     ["orchestrator.add_run", "orchestrator.change_run", "orchestrator.decide_approval",
      "orchestrator.add_workflowversion", "orchestrator.reset_breaker", "orchestrator.view_audit"]),
    ("approver", ["orchestrator.decide_approval", "orchestrator.view_run"],
     ["orchestrator.change_run", "orchestrator.add_run", "orchestrator.view_audit"]),
    ("operator", ["orchestrator.add_run", "orchestrator.change_run", "orchestrator.change_effect",
                  "orchestrator.reset_breaker"],
     ["orchestrator.decide_approval", "orchestrator.add_workflowversion", "orchestrator.view_audit"]),
    ("designer", ["designer.change_draft", "orchestrator.add_workflowversion", "orchestrator.add_run"],
     ["orchestrator.change_run", "orchestrator.decide_approval", "orchestrator.view_audit"]),
    ("admin", [permission for _, permissions in ROLES.values() for permission in permissions],
     ["orchestrator.delete_run", "auth.change_user", "orchestrator.change_apitoken"]),
])
def test_each_role_may_do_its_job_and_no_more(person, role, may, may_not):
    user = person(f"someone-{role}", role)
    assert all(user.has_perm(name) for name in may), [name for name in may if not user.has_perm(name)]
    assert not any(user.has_perm(name) for name in may_not), [name for name in may_not if user.has_perm(name)]


def test_ensure_role_groups_maps_each_role_to_its_group():
    groups = ensure_role_groups()
    assert {role: group.name for role, group in groups.items()} == {role: name for role, (name, _) in ROLES.items()}
