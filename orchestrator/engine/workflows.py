"""Workflows: save a definition as a draft, publish immutable versions, import and export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from ..models import AuditAction, Workflow, WorkflowVersion
from ..models.workflows import content_hash
from . import audit
from .errors import DefinitionError, WorkflowNotFound
from .validator import Finding, parse_definition


def load_document(text: str, filename: str = "") -> dict[str, Any]:
    """Parse JSON or YAML text (JSON is YAML, but JSON errors read better from json)."""
    looks_like_json = not filename.endswith((".yaml", ".yml")) and text.lstrip().startswith("{")
    try:
        if filename.endswith(".json") or looks_like_json:
            doc = json.loads(text)
        else:
            doc = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DefinitionError([Finding("syntax", f"{filename or 'document'} does not parse: {exc}")]) from exc
    if not isinstance(doc, dict):
        raise DefinitionError([Finding("syntax", "a definition must be a mapping at the top level")])
    try:  # keep only what JSON (and so the database) can hold: YAML also has dates, NaN, bytes
        doc = json.loads(json.dumps(doc, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DefinitionError([Finding("syntax", f"{filename or 'document'} holds a value JSON cannot: {exc}; "
                                                 "quote dates and times, and use no NaN, infinity or binary")]) from exc
    return doc


def publish(doc: dict[str, Any], name: str | None = None, user: Any = None,
            message: str = "") -> tuple[WorkflowVersion, bool]:
    """Validate and publish ``doc`` as the workflow's next version, with the publisher's
    ``message``. Returns (version, created).

    Publishing content identical to an existing version returns that version.
    """
    parse_definition(doc)
    name = name or doc.get("name")
    if not name:
        raise DefinitionError([Finding("schema", "the definition has no 'name'; add one or pass --name")])
    with transaction.atomic():
        workflow, _ = Workflow.objects.select_for_update().get_or_create(
            name=name, defaults={"title": doc.get("title", ""), "topology": doc.get("topology", "pipeline")}
        )
        workflow.title = doc.get("title", workflow.title)
        workflow.description = doc.get("description", workflow.description)
        workflow.topology = doc.get("topology", workflow.topology)
        workflow.draft = doc
        workflow.save()
        existing = workflow.versions.filter(content_hash=content_hash(doc)).first()
        if existing:
            return existing, False
        latest = workflow.latest_version()
        version = WorkflowVersion(workflow=workflow, number=(latest.number + 1 if latest else 1), definition=doc,
                                  created_by=user if getattr(user, "pk", None) else None, message=message[:500])
        version.save()
        audit.record(AuditAction.PUBLISH, user, target=version, workflow=name,
                     detail={"version": version.number, "message": version.message})
    return version, True


def import_file(path: str | Path, user: Any = None) -> tuple[WorkflowVersion, bool]:
    path = Path(path)
    return publish(load_document(path.read_text(encoding="utf-8"), path.name), user=user)


def export(name: str, fmt: str = "yaml", version: int | None = None) -> str:
    workflow = Workflow.objects.filter(name=name).first()
    if workflow is None:
        raise WorkflowNotFound(f"no workflow named {name!r}")
    chosen = workflow.versions.filter(number=version).first() if version else workflow.latest_version()
    if version and chosen is None:
        raise WorkflowNotFound(f"workflow {name!r} has no version {version}")
    doc = dict(chosen.definition) if chosen else dict(workflow.draft)
    doc.setdefault("name", name)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
