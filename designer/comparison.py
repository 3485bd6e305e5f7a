"""Which two definitions a comparison shows (versions by number, or the draft), and the graph of
the newer one with what changed outlined."""

from __future__ import annotations

from typing import Any

from django.utils.safestring import SafeString, mark_safe

from monitoring.graphs import GraphRenderError, render_svg
from orchestrator.engine.definition import build_definition
from orchestrator.models import Workflow

from . import drafts
from .diff import DefinitionDiff, diff
from .edits import EditError
from .models import Draft


def _side(workflow: Workflow, text: str) -> tuple[str, dict[str, Any]]:
    """(label, document) for ``text``: a version number, or "draft"."""
    if text == "draft":
        draft = Draft.objects.filter(name=workflow.name).first()
        if draft is None:
            raise EditError(f"{workflow.name} has no draft: open it in the designer first")
        return f"the draft (revision {draft.revision})", drafts.snapshot(draft).doc
    try:
        number = int(text)
    except ValueError:
        raise EditError(f"compare versions by number, or 'draft'; not {text[:20]!r}") from None
    version = workflow.versions.filter(number=number).first()
    if version is None:
        raise EditError(f"{workflow.name} has no version {number}")
    return f"version {number}", version.definition


def comparison(workflow: Workflow, a: str, b: str) -> dict[str, Any]:
    """What the compare page shows; ``a`` and ``b`` default to the two latest versions."""
    numbers = list(workflow.versions.order_by("-number").values_list("number", flat=True)[:2])
    if not numbers:
        raise EditError(f"{workflow.name} has no published version yet")
    b = b or str(numbers[0])
    a = a or str(numbers[1] if len(numbers) > 1 else numbers[0])
    (old_label, old), (new_label, new) = _side(workflow, a), _side(workflow, b)
    changes: DefinitionDiff = diff(old, new)
    graph: SafeString | None = None
    problem = ""
    try:
        graph = mark_safe(render_svg(  # labels escaped by the renderer
            build_definition(new), highlights=changes.highlights(),
            new_edges=[(t.source, t.target) for t in changes.transitions_added]))
    except (GraphRenderError, KeyError, TypeError, ValueError) as exc:
        problem = f"the graph of {new_label} cannot be drawn: {exc}"
    return {"a": a, "b": b, "old_label": old_label, "new_label": new_label, "changes": changes, "graph": graph,
            "graph_problem": problem,
            "choices": [*(str(n) for n in workflow.versions.order_by("-number").values_list("number", flat=True)),
                        *(["draft"] if Draft.objects.filter(name=workflow.name).exists() else [])]}
