"""Workflows over the API: list, get (draft and versions), create a draft, update it with the
revision it was read at, validate, publish, import, export and diff two versions. Each endpoint
calls the designer's draft functions (designer/drafts.py) or the engine's (publish, export);
none changes a draft or a version itself.

Reading needs ``orchestrator.view_run`` (every role has it: viewers see workflows in the
browser too); creating a draft ``designer.add_draft``, changing it ``designer.change_draft``,
publishing ``orchestrator.add_workflowversion``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse
from ninja import Query, Status

from orchestrator.api.core import ApiError, api, error, refusals, require
from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.validator import Finding, validate
from orchestrator.engine.workflows import export as export_definition
from orchestrator.engine.workflows import publish as publish_definition
from orchestrator.models import Workflow, WorkflowVersion

from . import drafts, source
from .api_schemas import (
    DefinitionIn,
    DiffOut,
    DiffQuery,
    DraftIn,
    DraftOut,
    ExportQuery,
    ImportIn,
    ImportOut,
    PublishedOut,
    PublishIn,
    ValidationOut,
    WorkflowDetail,
    WorkflowOut,
)
from .diff import MISSING, FieldChange, diff
from .edits import NAME, EditError
from .models import Draft

T = TypeVar("T")


@api.exception_handler(source.SourceError)
def _unparsable(request: HttpRequest, exc: source.SourceError) -> HttpResponse:
    return error(request, 422, "invalid_source", str(exc), "source", line=exc.line, column=exc.column)


@api.exception_handler(drafts.StaleDraft)
def _stale(request: HttpRequest, exc: drafts.StaleDraft) -> HttpResponse:
    return error(request, 409, "stale_revision", str(exc), "revision")


@api.exception_handler(DefinitionError)
def _invalid_definition(request: HttpRequest, exc: DefinitionError) -> HttpResponse:
    return error(request, 422, "invalid_definition", str(exc), "definition",
                 findings=[_finding(finding, None, None) for finding in exc.findings])


def _finding(finding: Finding, doc: dict[str, Any] | None, text: str | None) -> dict[str, Any]:
    state = finding.state
    top = state is not None and isinstance(doc, dict) and state in (doc.get("states") or {})
    return {**finding.as_dict(), "path": f"states.{state}" if top else None,
            "line": source.line_of_key(text, state) if state and text else None, "column": None}


def _findings(doc: dict[str, Any], text: str | None) -> list[dict[str, Any]]:
    return [_finding(finding, doc, text) for finding in validate(doc)]


def _draft_out(draft: Draft) -> dict[str, Any]:
    snap = drafts.snapshot(draft)
    revision = snap.revision
    return {"revision": revision.number, "format": revision.format, "source": revision.source, "note": revision.note,
            "author": revision.author.get_username() if revision.author else None, "updated_at": draft.updated_at,
            "findings": [_finding(finding, snap.doc, revision.source) for finding in snap.findings]}


def _version_out(version: WorkflowVersion) -> dict[str, Any]:
    return {"number": version.number, "created_at": version.created_at, "message": version.message,
            "created_by": version.created_by.get_username() if version.created_by else None}


def _workflow_out(workflow: Workflow) -> dict[str, Any]:
    numbers = [v.number for v in workflow.versions.all()]
    return {"name": workflow.name, "title": workflow.title, "topology": workflow.topology,
            "latest_version": max(numbers) if numbers else None}


def _draft_only_out(draft: Draft) -> dict[str, Any]:
    """A workflow nobody published yet: what its draft says."""
    doc = drafts.snapshot(draft).doc
    return {"name": draft.name, "title": str(doc.get("title", "")), "topology": str(doc.get("topology", "pipeline")),
            "description": str(doc.get("description", "")), "latest_version": None}


def _text(body: DefinitionIn) -> tuple[str, str]:
    """(text, format) of a posted definition: its source, or its JSON object written out."""
    if (body.source is None) == (body.definition is None):
        raise ApiError(422, "invalid", "send the definition either as 'source' (YAML or JSON text) or as "
                       "'definition' (a JSON object), not both nor neither", "source")
    if body.definition is not None:
        fmt = body.format or "json"
        return source.dump(body.definition, fmt), fmt
    text = body.source or ""
    return text, body.format or ("json" if text.lstrip().startswith("{") else "yaml")


def _blamed_on(body: DefinitionIn, action: Callable[[], T]) -> T:
    """``action()``; a definition sent as a JSON object that it refuses names ``definition``, not
    ``source`` (the line of text written from it would mean nothing to the caller). Not a context
    manager: SourceError is a frozen dataclass, whose traceback contextlib cannot set."""
    try:
        return action()
    except source.SourceError as exc:
        if body.definition is None:
            raise
        raise ApiError(422, "invalid_source", exc.message, "definition") from exc


def _name_of(body: DefinitionIn, doc: dict[str, Any]) -> str:
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ApiError(422, "invalid", "the definition needs a 'name': letters, digits, _ and - (a letter or _ "
                       "first), at most 100", "source" if body.source is not None else "definition.name")
    return name


def _draft(name: str) -> Draft:
    draft = Draft.objects.filter(name=name).first()
    if draft is None:
        raise ApiError(404, "draft_not_found", f"workflow {name!r} has no draft; open it in the designer, or "
                       "update it with PUT /api/workflows/{name}/draft", "name")
    return draft


def _opened(name: str, user: Any) -> Draft:
    """The workflow's draft; opened from its latest version (as revision 1) the first time."""
    try:
        return drafts.open_draft(name, user)
    except Draft.DoesNotExist:
        raise ApiError(404, "workflow_not_found", f"no workflow or draft named {name!r}", "name") from None


@api.get("/workflows", response=refusals() | {200: list[WorkflowOut]}, tags=["workflows"], summary="List workflows")
def list_workflows(request: HttpRequest) -> list[dict[str, Any]]:
    """Published workflows, and drafts nobody has published yet (``latest_version`` null), by name."""
    require(request, "orchestrator.view_run")
    found = {w.name: _workflow_out(w) for w in Workflow.objects.order_by("name").prefetch_related("versions")}
    for draft in Draft.objects.exclude(name__in=list(found)):
        found[draft.name] = {key: value for key, value in _draft_only_out(draft).items() if key != "description"}
    return [found[name] for name in sorted(found)]


@api.post("/workflows", response=refusals(400, 413, 409) | {201: WorkflowDetail}, tags=["workflows"],
          summary="Create a workflow's draft from a definition")
def create_workflow(request: HttpRequest, body: DefinitionIn) -> Status:
    """A new workflow, as a draft (revision 1) named by the definition's ``name``. It must parse
    and follow the definition's schema; other findings come back with it, to fix before
    publishing. A name taken by a workflow or a draft is refused (409, ``workflow_exists``)."""
    require(request, "designer.add_draft")
    text, fmt = _text(body)
    name = _name_of(body, _blamed_on(body, lambda: source.parse(text, fmt)))
    if Workflow.objects.filter(name=name).exists() or Draft.objects.filter(name=name).exists():
        raise ApiError(409, "workflow_exists", f"a workflow named {name!r} exists; update its draft instead", "name")
    try:
        _blamed_on(body, lambda: drafts.create_draft(name, text, fmt, request.user, note="created through the API"))
    except EditError as exc:
        raise ApiError(409, "workflow_exists", str(exc), "name") from exc
    return Status(201, _detail(name))


@api.get("/workflows/{name}", response=refusals(404) | {200: WorkflowDetail}, tags=["workflows"],
         summary="A workflow: its draft and its versions")
def get_workflow(request: HttpRequest, name: str) -> dict[str, Any]:
    require(request, "orchestrator.view_run")
    return _detail(name)


def _detail(name: str) -> dict[str, Any]:
    workflow = Workflow.objects.filter(name=name).prefetch_related("versions__created_by").first()
    draft = Draft.objects.filter(name=name).first()
    if workflow is None and draft is None:
        raise ApiError(404, "workflow_not_found", f"no workflow named {name!r}", "name")
    if workflow is None:
        return {**_draft_only_out(draft), "draft": _draft_out(draft), "versions": []}
    versions = sorted(workflow.versions.all(), key=lambda v: v.number)
    return {**_workflow_out(workflow), "description": workflow.description,
            "draft": _draft_out(draft) if draft else None, "versions": [_version_out(v) for v in versions]}


@api.put("/workflows/{name}/draft", response=refusals(400, 413, 404, 409) | {200: DraftOut}, tags=["workflows"],
         summary="Update a workflow's draft")
def update_draft(request: HttpRequest, name: str, body: DraftIn) -> dict[str, Any]:
    """Replace the draft's source. ``revision`` is the one you read: if someone changed the draft
    since, nothing is saved (409, ``stale_revision``). Text that does not parse or breaks the
    definition's schema is refused with its line (422, ``invalid_source``). A workflow without
    a draft has one opened from its latest version first, as revision 1."""
    require(request, "designer.change_draft")
    draft = _opened(name, request.user)
    fmt = body.format or draft.revisions.get(number=draft.revision).format
    drafts.save_source(draft.pk, body.revision, body.source, fmt, request.user)
    draft.refresh_from_db()
    return _draft_out(draft)


@api.post("/workflows/{name}/validate", response=refusals(400, 413, 404) | {200: ValidationOut}, tags=["workflows"],
          summary="Validate a definition, or the workflow's draft")
def validate_workflow(request: HttpRequest, name: str, body: DefinitionIn) -> dict[str, Any]:
    """The validator's findings for the posted definition; with an empty body (``{}``), for the
    workflow's draft (or its latest version when it has no draft). Text that does not parse
    is one finding (code ``syntax``) with its line and column."""
    require(request, "orchestrator.view_run")
    if body.source is None and body.definition is None:
        draft = Draft.objects.filter(name=name).first()
        if draft is not None:
            return _validation(_draft_out(draft)["findings"])
        workflow = Workflow.objects.filter(name=name).first()
        latest = workflow.latest_version() if workflow else None
        if latest is None:
            raise ApiError(404, "workflow_not_found", f"no workflow or draft named {name!r}", "name")
        return _validation(_findings(latest.definition, None))
    text, fmt = _text(body)
    try:
        doc = source.parse(text, fmt)
    except source.SourceError as exc:
        return _validation([{"code": "syntax", "severity": "error", "message": exc.message, "state": None,
                             "path": None, "line": exc.line, "column": exc.column}])
    return _validation(_findings(doc, text if body.source is not None else None))


def _validation(findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {"valid": not any(f["severity"] == "error" for f in findings), "findings": findings}


@api.post("/workflows/{name}/publish", response=refusals(400, 413, 404, 409) | {200: PublishedOut, 201: PublishedOut},
          tags=["workflows"], summary="Publish the draft as the next version")
def publish_workflow(request: HttpRequest, name: str, body: PublishIn) -> Status:
    """The draft's revision ``revision`` becomes the workflow's next version (201). Refused while
    the validator reports errors (422, ``invalid_definition``, with the findings) or when the
    draft changed since that revision (409, ``stale_revision``). Content an existing version
    already has publishes nothing (200, ``created`` false)."""
    require(request, "orchestrator.add_workflowversion")
    draft = _draft(name)
    version, created = drafts.publish_draft(draft.pk, body.revision, body.message, request.user)
    return Status(201 if created else 200, {**_version_out(version), "created": created})


@api.post("/workflows/{name}/import", response=refusals(400, 413, 409) | {200: ImportOut, 201: ImportOut},
          tags=["workflows"], summary="Import a definition as a draft, or publish it")
def import_workflow(request: HttpRequest, name: str, body: ImportIn) -> Status:
    """A definition document (its ``name`` must be the one in the URL) becomes the workflow's
    draft (``publish`` false, the default: needs ``designer.add_draft``; refused with 409
    ``draft_exists`` when the workflow has a draft, which you update with PUT .../draft), or
    its next published version (``publish`` true: needs ``orchestrator.add_workflowversion``;
    refused with the findings while it has errors). ``mode`` says which it made."""
    require(request, "orchestrator.add_workflowversion" if body.publish else "designer.add_draft")
    text, fmt = _text(body)
    doc = _blamed_on(body, lambda: source.parse(text, fmt))
    if _name_of(body, doc) != name:
        raise ApiError(422, "invalid", f"the definition's name is {doc['name']!r}, not {name!r}: import it at "
                       f"/api/workflows/{doc['name']}/import", "source" if body.source is not None else
                       "definition.name")
    if body.publish:
        version, created = publish_definition(doc, user=request.user, message=body.message)
        return Status(201 if created else 200, {"mode": "version", "created": created, "draft": None,
                                                "version": _version_out(version)})
    if Draft.objects.filter(name=name).exists():
        raise ApiError(409, "draft_exists", f"{name!r} has a draft already: update it with PUT "
                       f"/api/workflows/{name}/draft and the revision you read, or import with publish true", "name")
    try:
        draft = _blamed_on(body, lambda: drafts.create_draft(name, text, fmt, request.user,
                                                             note="imported through the API"))
    except EditError as exc:
        raise ApiError(409, "draft_exists", str(exc), "name") from exc
    return Status(201, {"mode": "draft", "created": True, "draft": _draft_out(draft), "version": None})


EXPORT_TYPES = {"yaml": "application/yaml", "json": "application/json"}


@api.get("/workflows/{name}/export", response=refusals(404), tags=["workflows"],
         summary="A version's definition as YAML or JSON",
         openapi_extra={"responses": {200: {"description": "the definition, as a file", "content": {
             "application/yaml": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}}}}})
def export_workflow(request: HttpRequest, name: str, query: Query[ExportQuery]) -> HttpResponse:
    """The published version ``version`` (the latest when left out), as a file to import elsewhere."""
    require(request, "orchestrator.view_run")
    text = export_definition(name, query.format, query.version)
    response = HttpResponse(text, content_type=f"{EXPORT_TYPES[query.format]}; charset=utf-8")
    suffix = f"-v{query.version}" if query.version else ""
    response["Content-Disposition"] = f'attachment; filename="{name}{suffix}.{query.format}"'
    return response


@api.get("/workflows/{name}/diff", response=refusals(404) | {200: DiffOut}, tags=["workflows"],
         summary="What changed between two versions")
def diff_versions(request: HttpRequest, name: str, query: Query[DiffQuery]) -> dict[str, Any]:
    """States added, removed and changed (field by field), transitions added and removed, and
    the workflow's own fields changed, from version ``old`` to version ``new``."""
    require(request, "orchestrator.view_run")
    if not Workflow.objects.filter(name=name).exists():
        raise ApiError(404, "workflow_not_found", f"no workflow named {name!r}", "name")
    found = {v.number: v.definition for v in WorkflowVersion.objects.filter(
        workflow__name=name, number__in=(query.old, query.new))}
    for field in ("old", "new"):
        if getattr(query, field) not in found:
            raise ApiError(404, "version_not_found", f"{name} has no version {getattr(query, field)}", field)
    changes = diff(found[query.old], found[query.new])
    return {"old": query.old, "new": query.new, "empty": changes.empty, "added": changes.added,
            "removed": changes.removed,
            "changed": [{"state": state, "fields": [_change(c) for c in fields]}
                        for state, fields in changes.changed.items()],
            "transitions_added": [vars(t) for t in changes.transitions_added],
            "transitions_removed": [vars(t) for t in changes.transitions_removed],
            "workflow": [_change(c) for c in changes.workflow]}


def _change(change: FieldChange) -> dict[str, Any]:
    kind = "added" if change.old is MISSING else "removed" if change.new is MISSING else "changed"
    return {"key": change.key, "change": kind, "old": None if change.old is MISSING else change.old,
            "new": None if change.new is MISSING else change.new}

