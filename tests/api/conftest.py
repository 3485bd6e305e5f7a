"""What the API tests share: a published workflow, people with a role, a bearer token, and a call
that answers (status, JSON body)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.engine.workflows import publish
from orchestrator.models import ApiToken, WorkflowVersion
from orchestrator.roles import ensure_role_groups

FLOW = {"name": "greet", "start_at": "hello", "sample_input": {"who": "Ada"}, "input_schema": {
    "type": "object", "required": ["who"], "properties": {"who": {"type": "string"}}},
    "states": {"hello": {"type": "task", "handler": "demo.noop", "end": True}}}


@pytest.fixture
def flow() -> WorkflowVersion:
    return publish(FLOW)[0]


@pytest.fixture
def user(django_user_model) -> Callable[..., Any]:
    """Make a person with a role (or none): ``user("operator", name="otto")``."""
    def make(role: str | None = None, name: str = "prog"):
        person = django_user_model.objects.create_user(name, password="pw")
        if role:
            person.groups.add(ensure_role_groups()[role])
        return person
    return make


def bearer(person: Any) -> dict[str, str]:
    """Headers that authenticate as ``person`` with a new API token."""
    _, secret = ApiToken.issue(person, "tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def call(client: Any, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None,
         **extra: Any) -> tuple[int, Any]:
    """``/api{path}`` with a JSON body (when given): (status, the JSON answer or None)."""
    kwargs = {"content_type": "application/json"} if body is not None else {}
    response = getattr(client, method)(f"/api{path}", json.dumps(body) if body is not None else None,
                                       **kwargs, **(headers or {}), **extra)
    return response.status_code, response.json() if response.content else None
