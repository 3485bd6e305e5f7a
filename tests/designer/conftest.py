"""Signed-in clients for the designer's tests: a designer (the designers group) and a viewer."""

from __future__ import annotations

import pytest

from orchestrator.roles import ensure_role_groups


@pytest.fixture
def designer(client, django_user_model):
    user = django_user_model.objects.create_user("dana", password="pw")
    user.groups.add(ensure_role_groups()["designer"])
    client.force_login(user)
    return client


@pytest.fixture
def viewer(client, django_user_model):
    user = django_user_model.objects.create_user("vic", password="pw")
    user.groups.add(ensure_role_groups()["viewer"])
    client.force_login(user)
    return client
