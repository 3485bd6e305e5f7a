"""Fixtures of the page tests: the demo workflows, and signed-in users with and without the
permissions to act."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command


@pytest.fixture
def demos(redis_conn, sink_path, fast_engine):
    call_command("load_demo", stdout=open(os.devnull, "w"))


@pytest.fixture
def viewer(client, django_user_model):
    """A signed-in user with no permission: may look, may not act."""
    user = django_user_model.objects.create_user("vera", password="pw")
    client.force_login(user)
    return client


@pytest.fixture
def operator(client, django_user_model):
    """A signed-in user who may start, cancel and redrive runs and decide effects."""
    user = django_user_model.objects.create_user("otto", password="pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_run", "change_run", "change_effect"]))
    client.force_login(user)
    return client
