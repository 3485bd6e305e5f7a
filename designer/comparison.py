"""Which two definitions a comparison shows (published versions by number, the draft, or one of
the draft's revisions as ``r<number>``), and the graph of the newer one with what changed
outlined."""

from __future__ import annotations

import copy
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from monitoring.graphs import GraphRenderError, render_svg
from orchestrator.engine.definition import build_definition
from orchestrator.models import WorkflowVersion

from . import drafts, source
from .diff import DefinitionDiff, diff
from .edits import EditError, scopes
from .models import Draft


def _side(name: str, draft: Draft | None, text: str) -> tuple[str, dict[str, Any]]:
    """(label, document) for ``text``: a version number, "draft", or "r<number>"."""
    if text == "draft" or text.startswith("r"):
        if draft is None:
            raise EditError(f"{name} has no draft: open it in the designer first")
        if text == "draft":
            return f"the draft (revision {draft.revision})", drafts.snapshot(draft).doc
        revision = draft.revisions.filter(number=int(text[1:])).first() if text[1:].isdigit() else None
        if revision is None:
            raise EditError(f"the draft of {name} has no revision {text[1:][:20]!r}")
        return f"revision {revision.number}", source.parse(revision.source, revision.format)
    try:
        number = int(text)
    except ValueError:
        raise EditError(f"compare versions by number, 'draft' or a revision such as 'r3'; not {text[:20]!r}") from None
    version = WorkflowVersion.objects.filter(workflow__name=name, number=number).first()
    if version is None:
        raise EditError(f"{name} has no version {number}")
    return f"version {number}", version.definition


TRANSITION_KEYS = ("next", "default", "to", "reject", "choices", "catch", "routes", "outcomes", "end")


def with_removed(old: dict[str, Any], new: dict[str, Any], changes: DefinitionDiff) -> dict[str, Any]:
    """The newer document with the removed states put back where they were (their branch, if it
    still exists, else the top), without their transitions: the comparison draws those apart."""
    merged = copy.deepcopy(new)
    where = {name: owner for scope, owner in scopes(old) for name in (scope.get("states") or {})}
    raws = {name: raw for scope, _ in scopes(old) for name, raw in (scope.get("states") or {}).items()}
    homes = {owner: scope for scope, owner in scopes(merged)}
    for name in changes.removed:
        home = homes.get(where.get(name, ""), merged)
        home.setdefault("states", {})[name] = {key: value for key, value in raws[name].items()
                                               if key not in TRANSITION_KEYS and key not in ("branches", "iterator")}
    return merged


def comparison(name: str, a: str, b: str) -> dict[str, Any]:
    """What the compare page shows; ``a`` and ``b`` default to the two latest versions."""
    draft = Draft.objects.filter(name=name).first()
    numbers = list(WorkflowVersion.objects.filter(workflow__name=name).order_by("-number").values_list(
        "number", flat=True))
    if not (a and b) and not numbers:
        raise EditError(f"{name} has no published version yet")
    b = b or str(numbers[0])
    a = a or str(numbers[1] if len(numbers) > 1 else numbers[0])
    (old_label, old), (new_label, new) = _side(name, draft, a), _side(name, draft, b)
    changes: DefinitionDiff = diff(old, new)
    graph: SafeString | None = None
    problem = ""
    try:
        graph = mark_safe(render_svg(  # labels escaped by the renderer
            build_definition(with_removed(old, new, changes)), highlights=changes.highlights(),
            new_edges=[(t.source, t.target) for t in changes.transitions_added],
            removed_edges=[(t.source, t.target) for t in changes.transitions_removed]))
    except (GraphRenderError, KeyError, TypeError, ValueError) as exc:
        problem = f"the graph of {new_label} cannot be drawn: {exc}"
    choices = [str(n) for n in numbers] + (["draft"] if draft else [])
    for side in (a, b):
        if side not in choices:
            choices.append(side)
    return {"a": a, "b": b, "old_label": old_label, "new_label": new_label, "changes": changes, "graph": graph,
            "graph_problem": problem, "choices": choices}
