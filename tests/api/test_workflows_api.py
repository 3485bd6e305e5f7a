"""Workflows over the API: get with the draft and versions, create a draft, update it with the
revision read (stale: 409), validate (findings with state and line), publish, import as a draft
or a version, export as YAML or JSON, and diff two versions; each with its permission."""

from __future__ import annotations

import json

import pytest
import yaml

from designer.models import Draft
from orchestrator.engine.workflows import publish
from orchestrator.models import WorkflowVersion

from .conftest import FLOW, bearer, call

pytestmark = pytest.mark.django_db

NEW = """name: hello_flow
title: Say hello
start_at: greet
states:
  greet:  # the only step
    type: task
    handler: demo.noop
    end: true
"""
TWO_STEPS = {**FLOW, "states": {"hello": {"type": "task", "handler": "demo.noop", "next": "bye"},
                                "bye": {"type": "succeed"}}}


@pytest.fixture
def designer(user):
    return bearer(user("designer", name="dana"))


@pytest.fixture
def viewer(user):
    return bearer(user("viewer", name="vic"))


@pytest.fixture
def drafted(client, designer):
    """A draft (revision 1) of hello_flow, made through the API."""
    status, body = call(client, "post", "/workflows", designer, {"source": NEW, "format": "yaml"})
    assert status == 201, body
    return body


def test_a_designer_creates_a_draft_from_yaml_and_everyone_sees_it(client, drafted, viewer):
    assert drafted["name"] == "hello_flow" and drafted["latest_version"] is None and drafted["versions"] == []
    assert drafted["draft"]["revision"] == 1 and drafted["draft"]["source"] == NEW  # comments kept
    assert drafted["draft"]["author"] == "dana" and drafted["draft"]["findings"] == []
    status, listed = call(client, "get", "/workflows", viewer)
    assert status == 200 and {"name": "hello_flow", "title": "Say hello", "topology": "pipeline",
                              "latest_version": None} in listed


def test_a_draft_can_be_created_from_a_json_object(client, designer):
    definition = {**FLOW, "name": "from_json"}
    status, body = call(client, "post", "/workflows", designer, {"definition": definition})
    assert status == 201 and body["draft"]["format"] == "json"
    assert json.loads(body["draft"]["source"]) == definition


@pytest.mark.parametrize("payload, status, code, field", [
    ({"source": NEW, "definition": FLOW}, 422, "invalid", "source"),
    ({}, 422, "invalid", "source"),
    ({"source": "name: x\nstates: [\n"}, 422, "invalid_source", "source"),
    ({"definition": {**FLOW, "name": "no spaces allowed"}}, 422, "invalid", "definition.name"),
    ({"definition": {**FLOW, "name": "odd", "states": {"hello": {"type": "teleport"}}}}, 422, "invalid_source",
     "definition"),
    ({"source": NEW.replace("demo.noop", "[1, 2]")}, 422, "invalid_source", "source"),
    ({"definition": FLOW}, 409, "workflow_exists", "name"),
])
def test_a_bad_create_names_what_to_fix(client, designer, flow, payload, status, code, field):
    got, body = call(client, "post", "/workflows", designer, payload)
    assert (got, body["code"], body.get("field")) == (status, code, field), body
    assert body["message"]


def test_a_source_that_does_not_parse_is_refused_at_its_line(client, designer):
    status, body = call(client, "post", "/workflows", designer, {"source": "name: x\nstates: [\n", "format": "yaml"})
    assert status == 422 and body["line"] == 3 and "line 3" in body["message"]


def test_creating_needs_the_designers_permission_and_a_caller(client, viewer):
    status, body = call(client, "post", "/workflows", viewer, {"source": NEW})
    assert status == 403 and "designer.add_draft" in body["message"]
    assert call(client, "post", "/workflows", None, {"source": NEW})[0] == 401
    assert not Draft.objects.exists()


def test_get_shows_the_draft_and_the_versions(client, flow, viewer):
    status, body = call(client, "get", "/workflows/greet", viewer)
    assert status == 200 and body["draft"] is None
    assert [(v["number"], v["message"]) for v in body["versions"]] == [(1, "")]
    status, body = call(client, "get", "/workflows/nope", viewer)
    assert status == 404 and body["code"] == "workflow_not_found" and body["field"] == "name"
    assert call(client, "get", "/workflows/greet")[0] == 401


def test_updating_the_draft_needs_the_revision_read(client, drafted, designer):
    changed = NEW.replace("Say hello", "Say hi")
    status, body = call(client, "put", "/workflows/hello_flow/draft", designer, {"revision": 1, "source": changed})
    assert status == 200 and body["revision"] == 2 and body["source"] == changed and body["format"] == "yaml"
    status, body = call(client, "put", "/workflows/hello_flow/draft", designer, {"revision": 1, "source": NEW})
    assert status == 409 and body["code"] == "stale_revision" and body["field"] == "revision"
    assert "revision 2 by dana" in body["message"]
    assert Draft.objects.get().revisions.get(number=2).source == changed  # the stale change saved nothing


def test_a_published_workflow_gets_its_draft_opened_from_its_latest_version(client, flow, designer):
    source = yaml.safe_dump({**FLOW, "title": "Greeter"}, sort_keys=False)
    status, body = call(client, "put", "/workflows/greet/draft", designer, {"revision": 1, "source": source})
    assert status == 200 and body["revision"] == 2
    _, detail = call(client, "get", "/workflows/greet", designer)
    assert detail["draft"]["revision"] == 2 and detail["latest_version"] == 1


@pytest.mark.parametrize("name, payload, status, code, field", [
    ("hello_flow", {"revision": 1, "source": "name: hello_flow\nstates: {\n"}, 422, "invalid_source", "source"),
    ("hello_flow", {"revision": 1, "source": NEW.replace("hello_flow", "renamed")}, 422, "invalid_source", "source"),
    ("hello_flow", {"revision": 0, "source": NEW}, 422, "invalid", "revision"),
    ("nope", {"revision": 1, "source": NEW}, 404, "workflow_not_found", "name"),
])
def test_a_bad_update_names_what_to_fix(client, drafted, designer, name, payload, status, code, field):
    got, body = call(client, "put", f"/workflows/{name}/draft", designer, payload)
    assert (got, body["code"], body.get("field")) == (status, code, field), body


def test_a_viewer_cannot_update_a_draft(client, drafted, viewer):
    status, body = call(client, "put", "/workflows/hello_flow/draft", viewer, {"revision": 1, "source": NEW})
    assert status == 403 and "designer.change_draft" in body["message"]


def test_validate_returns_each_finding_with_its_state_and_line(client, drafted, viewer):
    broken = NEW.replace("    end: true\n", "    next: nowhere\n")
    status, body = call(client, "post", "/workflows/hello_flow/validate", viewer, {"source": broken})
    assert status == 200 and body["valid"] is False
    finding = next(f for f in body["findings"] if f["state"] == "greet")
    assert finding["severity"] == "error" and "nowhere" in finding["message"]
    assert finding["path"] == "states.greet" and finding["line"] == 5
    status, body = call(client, "post", "/workflows/hello_flow/validate", viewer, {})  # the draft itself
    assert status == 200 and body == {"valid": True, "findings": []}


def test_validate_reports_text_that_does_not_parse_as_a_finding(client, drafted, viewer):
    status, body = call(client, "post", "/workflows/hello_flow/validate", viewer, {"source": "{\"name\": ", "format":
                                                                                     "json"})
    assert status == 200 and body["valid"] is False
    assert body["findings"][0]["code"] == "syntax" and body["findings"][0]["line"] == 1


def test_validate_refusals(client, viewer):
    assert call(client, "post", "/workflows/nope/validate", None, {})[0] == 401
    status, body = call(client, "post", "/workflows/nope/validate", viewer, {})
    assert status == 404 and body["code"] == "workflow_not_found"
    status, body = call(client, "post", "/workflows/nope/validate", viewer, {"source": NEW, "format": "toml"})
    assert status == 422 and body["field"] == "format"


def test_publishing_the_draft_makes_the_next_version(client, drafted, designer):
    status, body = call(client, "post", "/workflows/hello_flow/publish", designer, {"revision": 1, "message": "first"})
    assert status == 201 and body["number"] == 1 and body["created"] and body["created_by"] == "dana"
    status, body = call(client, "post", "/workflows/hello_flow/publish", designer, {"revision": 1})
    assert status == 200 and body["number"] == 1 and not body["created"]  # the same content: no new version
    call(client, "put", "/workflows/hello_flow/draft", designer, {"revision": 1, "source": NEW + "# more\n"})
    status, body = call(client, "post", "/workflows/hello_flow/publish", designer, {"revision": 1})
    assert status == 409 and body["code"] == "stale_revision"


def test_a_draft_with_errors_is_not_published(client, drafted, designer):
    call(client, "put", "/workflows/hello_flow/draft", designer,
         {"revision": 1, "source": NEW.replace("    end: true\n", "    next: nowhere\n")})
    status, body = call(client, "post", "/workflows/hello_flow/publish", designer, {"revision": 2})
    assert status == 422 and body["code"] == "invalid_definition" and "nowhere" in body["message"]
    assert body["findings"][0]["state"] == "greet" and not WorkflowVersion.objects.exists()


def test_publishing_refusals(client, drafted, user, designer):
    operator = bearer(user("operator", name="otto"))
    status, body = call(client, "post", "/workflows/hello_flow/publish", operator, {"revision": 1})
    assert status == 403 and "orchestrator.add_workflowversion" in body["message"]
    status, body = call(client, "post", "/workflows/nope/publish", designer, {"revision": 1})
    assert status == 404 and body["code"] == "draft_not_found"
    assert call(client, "post", "/workflows/hello_flow/publish", designer, {})[0] == 422
    assert not WorkflowVersion.objects.exists()


def test_import_makes_a_draft_by_default_and_a_version_when_asked(client, designer):
    status, body = call(client, "post", "/workflows/hello_flow/import", designer, {"source": NEW})
    assert status == 201 and body["mode"] == "draft" and body["draft"]["revision"] == 1 and body["version"] is None
    status, body = call(client, "post", "/workflows/hello_flow/import", designer, {"source": NEW})
    assert status == 409 and body["code"] == "draft_exists"
    status, body = call(client, "post", "/workflows/hello_flow/import", designer,
                        {"source": NEW, "publish": True, "message": "from CI"})
    assert status == 201 and body["mode"] == "version" and body["version"]["number"] == 1
    assert body["version"]["message"] == "from CI" and body["draft"] is None


@pytest.mark.parametrize("role, payload, status, code", [
    ("designer", {"definition": FLOW}, 422, "invalid"),  # named greet, imported at hello_flow
    ("designer", {"source": NEW.replace("end: true", "next: nowhere"), "publish": True}, 422, "invalid_definition"),
    ("viewer", {"source": NEW}, 403, "forbidden"),
    ("operator", {"source": NEW, "publish": True}, 403, "forbidden"),
])
def test_import_refusals(client, user, role, payload, status, code):
    got, body = call(client, "post", "/workflows/hello_flow/import", bearer(user(role)), payload)
    assert (got, body["code"]) == (status, code), body
    assert not Draft.objects.exists() and not WorkflowVersion.objects.exists()


def test_export_gives_a_version_as_yaml_or_json(client, flow, viewer):
    publish(TWO_STEPS)
    response = client.get("/api/workflows/greet/export?version=1", **viewer)
    assert response.status_code == 200 and response["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.content) == FLOW
    response = client.get("/api/workflows/greet/export?format=json", **viewer)
    assert response.status_code == 200 and json.loads(response.content) == TWO_STEPS  # the latest
    assert 'filename="greet.json"' in response["Content-Disposition"]


def test_export_refusals(client, flow, viewer):
    status, body = call(client, "get", "/workflows/greet/export?version=9", viewer)
    assert status == 404 and body["code"] == "workflow_not_found"
    status, body = call(client, "get", "/workflows/greet/export?format=xml", viewer)
    assert status == 422 and body["field"] == "format"
    assert call(client, "get", "/workflows/greet/export")[0] == 401


def test_diff_lists_what_changed_between_two_versions(client, flow, viewer):
    publish(TWO_STEPS)
    status, body = call(client, "get", "/workflows/greet/diff?old=1&new=2", viewer)
    assert status == 200 and body["added"] == ["bye"] and body["removed"] == [] and not body["empty"]
    assert body["changed"] == [{"state": "hello", "fields": [
        {"key": "end", "change": "removed", "old": True, "new": None},
        {"key": "next", "change": "added", "old": None, "new": "bye"}]}]
    assert body["transitions_added"] == [{"source": "hello", "target": "bye", "where": "next"}]
    status, same = call(client, "get", "/workflows/greet/diff?old=2&new=2", viewer)
    assert status == 200 and same["empty"]


@pytest.mark.parametrize("path, status, field", [
    ("/workflows/greet/diff?old=1&new=7", 404, "new"),
    ("/workflows/nope/diff?old=1&new=2", 404, "name"),
    ("/workflows/greet/diff?old=1", 422, "new"),
])
def test_diff_refusals(client, flow, viewer, path, status, field):
    got, body = call(client, "get", path, viewer)
    assert (got, body["field"]) == (status, field), body


def test_reading_workflows_needs_the_view_permission(client, flow, user):
    nobody = bearer(user(None, name="nobody"))
    for path in ("/workflows", "/workflows/greet", "/workflows/greet/export", "/workflows/greet/diff?old=1&new=1"):
        status, body = call(client, "get", path, nobody)
        assert status == 403 and "orchestrator.view_run" in body["message"], path
