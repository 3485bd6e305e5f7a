"""The designer's list: every workflow and every draft in one table, filtered by text, topology
and status, each with a small preview of its graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import F, JSONField, OuterRef, Subquery
from django.http import QueryDict

from monitoring.graphs import GraphRenderError, render_svg
from orchestrator.engine.definition import build_definition
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.models.workflows import Topology

from . import source
from .models import DraftRevision

STATUSES = {"draft": "a draft not published yet", "published": "published", "ahead": "a draft ahead of its version"}


@dataclass
class Entry:
    name: str
    title: str
    topology: str
    latest: int | None  # the latest version's number
    draft_revision: int | None
    ahead: bool  # the draft differs from the latest version
    preview: str  # a small SVG, or "" when it cannot be drawn


@dataclass
class Listing:
    entries: list[Entry]
    query: str
    topology: str
    status: str
    topologies: list[tuple[str, str]]
    statuses: dict[str, str]


def _preview(doc: dict[str, Any] | None) -> str:
    if not doc:
        return ""
    try:
        return render_svg(build_definition(doc))
    except (GraphRenderError, KeyError, TypeError, ValueError):
        return ""


def listing(params: QueryDict) -> Listing:
    """Two queries whatever the number of workflows: workflows with their latest version, and the
    drafts with their current revision."""
    query, topology, status = (params.get(k, "").strip() for k in ("q", "topology", "status"))
    latest = WorkflowVersion.objects.filter(workflow=OuterRef("pk")).order_by("-number")
    workflows = {w.name: w for w in Workflow.objects.annotate(
        latest_number=Subquery(latest.values("number")[:1]),
        latest_definition=Subquery(latest.values("definition")[:1], output_field=JSONField()))}
    drafts: dict[str, tuple[int, dict[str, Any] | None]] = {}
    for revision in DraftRevision.objects.filter(number=F("draft__revision")).select_related("draft"):
        try:
            doc: dict[str, Any] | None = source.parse(revision.source, revision.format)
        except source.SourceError:
            doc = None
        drafts[revision.draft.name] = (revision.number, doc)
    entries = []
    for name in sorted(set(workflows) | set(drafts)):
        workflow = workflows.get(name)
        number, published = (workflow.latest_number, workflow.latest_definition) if workflow else (None, None)
        revision, draft_doc = drafts.get(name, (None, None))
        doc = draft_doc if revision is not None else published
        entries.append(Entry(
            name, (doc or {}).get("title", "") or (workflow.title if workflow else ""),
            (doc or {}).get("topology", "") or (workflow.topology if workflow else ""), number, revision,
            bool(revision is not None and published is not None and draft_doc != published), _preview(doc)))
    if query:
        entries = [e for e in entries if query.lower() in e.name.lower() or query.lower() in e.title.lower()]
    if topology:
        entries = [e for e in entries if e.topology == topology]
    if status == "draft":
        entries = [e for e in entries if e.latest is None]
    elif status == "published":
        entries = [e for e in entries if e.latest is not None]
    elif status == "ahead":
        entries = [e for e in entries if e.ahead]
    return Listing(entries, query, topology, status, list(Topology.choices), STATUSES)
