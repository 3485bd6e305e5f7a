"""Fixtures of the roles tests: people in each role's group, and clients signed in as them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from orchestrator.roles import ensure_role_groups


@pytest.fixture
def person(django_user_model) -> Callable[..., Any]:
    """``person("ann", "approver")``: a user in that role's group (no role: ``None``)."""
    groups: dict[str, Any] = {}

    def make(username: str, role: str | None = None, **fields: Any) -> Any:
        user = django_user_model.objects.create_user(username, password="pw", **fields)
        if role is not None:
            if not groups:
                groups.update(ensure_role_groups())
            user.groups.add(groups[role])
        return user

    return make


@pytest.fixture
def signed_in(person) -> Callable[..., Client]:
    """``signed_in("vera", "viewer")``: a client signed in as a new person of that role."""

    def sign_in(username: str, role: str | None = None) -> Client:
        client = Client()
        client.force_login(person(username, role))
        return client

    return sign_in
