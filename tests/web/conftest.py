"""Fixtures of the page tests: the demo workflows, and signed-in users with and without the
permissions to act."""

from __future__ import annotations

import os

import pytest
from django.core.management import call_command

from orchestrator.roles import ensure_role_groups


@pytest.fixture
def demos(redis_conn, sink_path, fast_engine):
    call_command("load_demo", stdout=open(os.devnull, "w"))


@pytest.fixture
def viewer(client, django_user_model):
    """A signed-in user of the viewer role: may look, may not act."""
    user = django_user_model.objects.create_user("vera", password="pw")
    user.groups.add(ensure_role_groups()["viewer"])
    client.force_login(user)
    return client


@pytest.fixture
def operator(client, django_user_model):
    """A signed-in user of the operator role: may start, cancel and redrive runs, decide effects
    and reset circuit breakers."""
    user = django_user_model.objects.create_user("otto", password="pw")
    user.groups.add(ensure_role_groups()["operator"])
    client.force_login(user)
    return client
