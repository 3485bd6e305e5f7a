"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis): for every
operation, requests that fit the document and requests that break it, sent through the WSGI
application as a user holding every role. No answer may be a server error, and every answer
must be one the document describes (status, content type, headers, body schema).

The number of examples is bounded (EXAMPLES per operation and mode, RATCHET_FUZZ_EXAMPLES to
change it) so the test stays under a minute on CI; hypothesis's example database is off, so a
run does not depend on earlier ones."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.roles import ensure_role_groups

from .conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)  # the WSGI app commits, as in production

EXAMPLES = int(os.environ.get("RATCHET_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture
def everyone(django_user_model) -> dict[str, str]:
    """The Authorization header of a person with every role: every endpoint is open to them."""
    person = django_user_model.objects.create_user("fuzzer", password="pw")
    person.groups.add(*ensure_role_groups().values())
    return {"Authorization": bearer(person)["HTTP_AUTHORIZATION"]}


@pytest.fixture
def api_schema(flow, redis_conn) -> Any:
    """The API's OpenAPI document as the running application serves it, with a workflow to find."""
    return schemathesis.openapi.from_wsgi("/api/schema", get_wsgi_application())


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], **fixed: Any) -> None:
    """Send EXAMPLES generated requests (``fixed``: parameters held, e.g. ``path_parameters``)."""
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_answers_as_its_document_says(api_schema, everyone):
    found = operations(api_schema)
    assert len(found) >= 18  # every endpoint is in the document
    failures: list[str] = []
    for operation in found:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, everyone)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (collect them all, then report)
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:3000]}")
    assert not failures, "\n\n".join(failures)


def broken_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    from designer import api as workflows

    monkeypatch.setattr(workflows, "_workflow_out", lambda workflow: {"name": workflow.name})


def undocumented_status(monkeypatch: pytest.MonkeyPatch) -> None:
    from designer import api as workflows
    from orchestrator.api.core import ApiError

    def gone(name: str) -> None:
        raise ApiError(410, "gone", "an answer the document does not list")

    monkeypatch.setattr(workflows, "_detail", gone)


def undocumented_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from designer import api as workflows

    monkeypatch.setattr(workflows, "EXPORT_TYPES", {"yaml": "text/plain", "json": "text/plain"})


@pytest.mark.parametrize("label, breaks, caught", [
    ("GET /api/workflows", broken_listing, "Server error"),
    ("GET /api/workflows/{name}", undocumented_status, "Undocumented status code"),
    ("GET /api/workflows/{name}/export", undocumented_content_type, "Undocumented Content-Type"),
])
def test_the_fuzzing_catches_an_endpoint_that_breaks_its_document(api_schema, everyone, monkeypatch, label,
                                                                   breaks, caught):
    """The test above can fail: a server error, a status or a content type the document does not
    list is caught (on the workflow the fixture published, so the endpoint answers 200)."""
    breaks(monkeypatch)
    [operation] = [op for op in operations(api_schema) if op.label == label]
    fixed = {"path_parameters": {"name": "greet"}} if "{name}" in label else {}
    with pytest.raises(BaseExceptionGroup, match=caught):
        fuzz(operation, GenerationMode.POSITIVE, everyone, **fixed)
