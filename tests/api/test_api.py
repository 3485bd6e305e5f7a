"""The JSON API: token and session authentication, starting runs with Idempotency-Key, listing
with a cursor, a run whole, cancel and redrive with their permissions, errors as JSON with a
stable code and the field to fix, and the OpenAPI document and docs served locally."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.models import ApiToken, Event, EventKind, Run, RunStatus

from .conftest import bearer, call

pytestmark = pytest.mark.django_db


def test_without_credentials_the_api_answers_401_in_json_not_a_redirect(client):
    status, body = call(client, "get", "/runs")
    assert status == 401 and body["code"] == "unauthenticated" and "Bearer" in body["message"]


def test_a_token_acts_as_its_user_until_revoked_or_expired(client, user, flow):
    person = user("operator")
    token, secret = ApiToken.issue(person, "ci")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert call(client, "get", "/runs", headers)[0] == 200
    assert ApiToken.objects.get().hashed != secret and secret.startswith(token.prefix)  # stored hashed
    token.revoked_at = timezone.now()
    token.save()
    assert call(client, "get", "/runs", headers)[0] == 401
    _, later = ApiToken.issue(person, "short", expires_at=timezone.now() - timedelta(seconds=1))
    assert call(client, "get", "/runs", {"HTTP_AUTHORIZATION": f"Bearer {later}"})[0] == 401


def test_starting_a_run_with_an_idempotency_key(client, user, flow, redis_conn):
    headers = {**bearer(user("operator")), "HTTP_IDEMPOTENCY_KEY": "order-7"}
    status, first = call(client, "post", "/runs", headers, {"workflow": "greet", "input": {"who": "Ada"}})
    assert status == 201 and first["status"] == "running" and first["started_by"] == "prog"
    status, again = call(client, "post", "/runs", headers, {"workflow": "greet", "input": {"who": "Ada"}})
    assert status == 200 and again["id"] == first["id"] and Run.objects.count() == 1
    status, body = call(client, "post", "/runs", headers, {"workflow": "greet", "input": {"who": "Bob"}})
    assert status == 422 and body["code"] == "idempotency_key_reused" and body["field"] == "Idempotency-Key"


@pytest.mark.parametrize("payload, status, code, field", [
    ({"input": {"who": "x"}}, 422, "invalid", "workflow"),
    ({"workflow": "nope"}, 404, "workflow_not_found", "workflow"),
    ({"workflow": "greet", "input": {}}, 422, "invalid_input", "input.who"),
    ({"workflow": "greet", "input": {"who": "x"}, "version": 9}, 404, "workflow_not_found", "workflow"),
])
def test_a_bad_start_names_what_to_fix(client, user, flow, payload, status, code, field):
    got, body = call(client, "post", "/runs", bearer(user("operator")), payload)
    assert (got, body["code"], body["field"]) == (status, code, field), body
    assert body["message"] and not Run.objects.exists()


def test_a_viewer_reads_but_cannot_start_or_cancel(client, user, flow, redis_conn):
    viewer = bearer(user("viewer"))
    status, body = call(client, "post", "/runs", viewer, {"workflow": "greet", "input": {"who": "x"}})
    assert status == 403 and body["code"] == "forbidden" and "orchestrator.add_run" in body["message"]
    run = Run.objects.create(workflow=flow.workflow, version=flow, status=RunStatus.RUNNING)
    assert call(client, "post", f"/runs/{run.pk}/cancel", viewer, {})[0] == 403
    assert call(client, "get", f"/runs/{run.pk}", viewer)[0] == 200


def test_listing_pages_with_a_cursor_and_filters(client, user, flow):
    headers = bearer(user("viewer"))
    for i in range(5):
        Run.objects.create(workflow=flow.workflow, version=flow,
                           status=RunStatus.SUCCEEDED if i % 2 else RunStatus.FAILED)
    seen, cursor = [], None
    while True:
        status, page = call(client, "get", "/runs" + (f"?limit=2&cursor={cursor}" if cursor else "?limit=2"), headers)
        assert status == 200
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    newest_first = [str(pk) for pk in Run.objects.order_by("-created_at", "-id").values_list("pk", flat=True)]
    assert seen == newest_first
    _, failed = call(client, "get", "/runs?status=failed", headers)
    assert {item["status"] for item in failed["items"]} == {"failed"} and len(failed["items"]) == 3
    status, body = call(client, "get", "/runs?status=exploded", headers)
    assert status == 422 and body["field"] == "status"
    status, body = call(client, "get", "/runs?cursor=garbage", headers)
    assert status == 422 and body["field"] == "cursor"
    status, body = call(client, "get", "/runs?limit=1000", headers)
    assert status == 422 and body["field"] == "limit"


def test_a_run_whole_then_cancelled_and_compensated_by_an_operator(client, user, flow, redis_conn):
    headers = bearer(user("operator"))
    _, started = call(client, "post", "/runs", headers, {"workflow": "greet", "input": {"who": "Ada"}})
    status, run = call(client, "get", f"/runs/{started['id']}", headers)
    assert status == 200 and run["input"] == {"who": "Ada"} and run["attempts"][0]["state"] == "hello"
    assert run["events"][0]["kind"] == EventKind.RUN_STARTED and run["effects"] == []
    status, cancelled = call(client, "post", f"/runs/{started['id']}/cancel", headers,
                             {"compensate": True, "reason": "wrong customer"})
    assert status == 200 and cancelled["status"] in ("cancelled", "compensated")
    event = Event.objects.filter(run_id=started["id"], kind__in=(EventKind.RUN_CANCELLED,)).first()
    assert event is None or event.actor.username == "prog"
    status, body = call(client, "post", f"/runs/{started['id']}/cancel", headers, {})
    assert status == 409 and body["code"] == "invalid_transition"
    status, body = call(client, "get", "/runs/00000000-0000-0000-0000-000000000000", headers)
    assert status == 404 and body["code"] == "run_not_found"


def test_the_session_works_for_the_browser(client, user, flow):
    client.force_login(user("viewer"))
    status, body = call(client, "get", "/workflows")
    assert status == 200 and body == [{"name": "greet", "title": "", "topology": "pipeline", "latest_version": 1}]


def test_the_openapi_document_and_the_docs_are_served_locally(client):
    schema = client.get("/api/schema")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/cancel", "/api/workflows"} <= set(paths)
    docs = client.get("/api/docs")
    html = docs.content.decode()
    assert docs.status_code == 200 and "swagger-ui" in html and "cdn.jsdelivr" not in html and "unpkg" not in html


def test_the_tokens_page_shows_a_secret_once_and_revokes(client, user):
    client.force_login(user())
    page = client.post("/account/tokens/", {"name": "ci", "days": "30"}).content.decode()
    secret = page.split('id="token-secret">')[1].split("<")[0]
    assert secret.startswith("rt_") and ApiToken.objects.get().expires_at is not None
    listing = client.get("/account/tokens/").content.decode()
    assert secret not in listing and ApiToken.objects.get().prefix in listing
    assert client.post("/account/tokens/", {"name": ""}).status_code == 400
    client.post(f"/account/tokens/{ApiToken.objects.get().pk}/revoke/")
    assert ApiToken.user_for(secret) is None


def test_a_nul_character_in_a_filter_is_the_callers_to_fix_not_a_server_error(client, user):
    from django.db import connection

    status, body = call(client, "get", "/runs?workflow=ab%00c", bearer(user("viewer")))
    if connection.vendor == "postgresql":  # SQLite stores and compares NUL; PostgreSQL refuses it
        assert status == 422 and body["code"] == "invalid" and "NUL" in body["message"]
    else:
        assert status == 200 and body["items"] == []


def test_a_body_that_is_not_json_or_too_large_is_refused_in_json(client, user, flow, settings):
    headers = bearer(user("operator"))
    response = client.post("/api/runs", "{not json", content_type="application/json", **headers)
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    status, body = call(client, "post", "/runs", headers, {"workflow": "greet", "input": {"who": "x" * 200}})
    assert status == 413 and body["code"] == "too_large" and not Run.objects.exists()


def test_the_openapi_document_lists_every_endpoint_and_its_refusals(client):
    paths = client.get("/api/schema").json()["paths"]
    assert {"/api/runs/{run_id}/events/stream", "/api/workflows/{name}", "/api/workflows/{name}/draft",
            "/api/workflows/{name}/validate", "/api/workflows/{name}/publish", "/api/workflows/{name}/import",
            "/api/workflows/{name}/export", "/api/workflows/{name}/diff", "/api/approvals",
            "/api/approvals/{approval_id}/decide", "/api/effects", "/api/effects/{effect_id}/decide",
            "/api/kpis"} <= set(paths)
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert {"401", "403", "422"} <= set(operation["responses"]), (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), (method, path)
    decide = paths["/api/approvals/{approval_id}/decide"]["post"]["responses"]
    assert decide["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert "text/event-stream" in paths["/api/runs/{run_id}/events/stream"]["get"]["responses"]["200"]["content"]
