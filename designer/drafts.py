"""Drafts: open, change (source or an edit), undo, redo and publish, each one function the views
call. Every change is a new revision written in a transaction that holds the draft's row and
checks the revision the person was looking at: a stale change is refused (StaleDraft), never
merged silently. A change that does not parse is refused with its line and leaves the draft as
it was (source.SourceError)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.validator import Finding, validate
from orchestrator.engine.workflows import export, publish
from orchestrator.models import Workflow, WorkflowVersion

from . import source
from .edits import EditError
from .models import Draft, DraftRevision


class StaleDraft(Exception):
    """The draft changed since the person loaded it."""

    def __init__(self, draft: Draft, seen: int) -> None:
        latest = draft.revisions.filter(number=draft.revision).select_related("author").first()
        who = f" by {latest.author.get_username()}" if latest and latest.author else ""
        when = f" at {latest.created_at:%H:%M:%S}" if latest else ""
        super().__init__(f"the draft changed since you opened it (you saw revision {seen}; it is now revision "
                         f"{draft.revision}{who}{when}): reload it and make your change again")


@dataclass(frozen=True)
class Snapshot:
    """A draft as the editor shows it: its revision, the document, and what the validator says."""

    draft: Draft
    revision: DraftRevision
    doc: dict[str, Any]
    findings: list[Finding]
    can_undo: bool
    can_redo: bool

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]


def open_draft(name: str, user: Any = None) -> Draft:
    """The draft of workflow ``name``; the first time, made from its latest version."""
    draft = Draft.objects.filter(name=name).first()
    if draft is not None:
        return draft
    workflow = Workflow.objects.filter(name=name).first()
    if workflow is None or workflow.latest_version() is None:
        raise Draft.DoesNotExist(f"no workflow or draft named {name!r}")
    return create_draft(name, export(name, "yaml"), "yaml", user, note=f"opened from version "
                        f"{workflow.latest_version().number}")


def _checked(text: str, fmt: str) -> dict[str, Any]:
    """The document in ``text``; SourceError at the right line when it does not parse or breaks
    the definition's schema (other findings are the editor's to show, not a reason to refuse)."""
    doc = source.parse(text, fmt)
    schema = [finding for finding in validate(doc) if finding.code == "schema"]
    if schema:
        first = schema[0]
        more = f" (and {len(schema) - 1} more schema error{'s' if len(schema) > 2 else ''})" if len(schema) > 1 else ""
        where = f"{first.state}: " if first.state else ""
        raise source.SourceError(f"{where}{first.message}{more}",
                                 source.line_of_key(text, first.state) if first.state else 1)
    return doc


def create_draft(name: str, text: str, fmt: str, user: Any = None, note: str = "created") -> Draft:
    """A new draft whose first revision is ``text``: it must parse and follow the definition's
    schema; it need not pass every check yet."""
    doc = _checked(text, fmt)
    if doc.get("name") != name:
        raise source.SourceError(f"the definition's name must be {name!r}, the draft's", 1, 1)
    with transaction.atomic():
        if Draft.objects.filter(name=name).exists():
            raise EditError(f"a draft named {name!r} exists already; open it instead")
        draft = Draft.objects.create(name=name, revision=1, created_by=_user(user))
        DraftRevision.objects.create(draft=draft, number=1, source=text, format=fmt, note=note, author=_user(user))
    return draft


def copy_source(draft: Draft, name: str) -> tuple[str, str]:
    """(format, text) of the draft's current revision under another workflow name, comments kept."""
    revision = draft.revisions.get(number=draft.revision)
    doc = source.load(revision.source, revision.format)
    doc["name"] = name
    return revision.format, source.dump(doc, revision.format)


def snapshot(draft: Draft) -> Snapshot:
    revision = draft.revisions.get(number=draft.revision)
    doc = source.parse(revision.source, revision.format)
    last = draft.revisions.order_by("-number").values_list("number", flat=True).first()
    return Snapshot(draft, revision, doc, validate(doc), draft.revision > 1, last is not None and last > draft.revision)


def _user(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None


def _locked(draft_id: int, seen: int) -> Draft:
    draft = Draft.objects.select_for_update().get(pk=draft_id)
    if draft.revision != seen:
        raise StaleDraft(draft, seen)
    return draft


def _append(draft: Draft, text: str, fmt: str, user: Any, note: str) -> DraftRevision:
    """A new revision after the current one (the redo tail, if any, is dropped)."""
    draft.revisions.filter(number__gt=draft.revision).delete()
    draft.revision += 1
    draft.save(update_fields=["revision", "updated_at"])
    return DraftRevision.objects.create(draft=draft, number=draft.revision, source=text, format=fmt, note=note,
                                        author=_user(user))


def save_source(draft_id: int, seen: int, text: str, fmt: str, user: Any = None) -> DraftRevision:
    """Replace the source (the Source tab's save). Refused, the draft untouched, when it does not
    parse, breaks the definition's schema (at the line of the state concerned) or renames the
    workflow; unchanged text makes no revision. Other findings are the editor's to show."""
    doc = _checked(text, fmt)
    with transaction.atomic():
        draft = _locked(draft_id, seen)
        if doc.get("name") != draft.name:
            raise source.SourceError(f"the definition's name must stay {draft.name!r}; to rename a workflow, "
                                     "duplicate it under the new name", 1, 1)
        current = draft.revisions.get(number=draft.revision)
        if current.source == text and current.format == fmt:
            return current
        return _append(draft, text, fmt, user, "source edited")


def apply_edit(draft_id: int, seen: int, change: Callable[[Any], str], user: Any = None) -> DraftRevision:
    """Apply ``change`` (an edit of edits.py on the round-trip document; returns the revision's
    note) and save the result in the draft's own format, its comments kept."""
    with transaction.atomic():
        draft = _locked(draft_id, seen)
        current = draft.revisions.get(number=draft.revision)
        doc = source.load(current.source, current.format)
        note = change(doc)
        text = source.dump(doc, current.format)
        source.parse(text, current.format)  # an edit never leaves text that does not parse
        if text == current.source:  # nothing changed: no revision to undo
            return current
        return _append(draft, text, current.format, user, note)


def move(draft_id: int, seen: int, step: int) -> Draft:
    """Undo (step -1) or redo (step +1): show the revision before or after."""
    with transaction.atomic():
        draft = _locked(draft_id, seen)
        target = draft.revision + step
        if target < 1 or not draft.revisions.filter(number=target).exists():
            raise EditError("nothing to undo" if step < 0 else "nothing to redo")
        draft.revision = target
        draft.save(update_fields=["revision", "updated_at"])
    return draft


def publish_draft(draft_id: int, seen: int, message: str, user: Any = None) -> tuple[WorkflowVersion, bool]:
    """Publish the revision the person saw as the workflow's next version, with ``message``.
    Refused (DefinitionError with the findings) while the validator reports errors."""
    with transaction.atomic():
        draft = _locked(draft_id, seen)
        current = draft.revisions.get(number=draft.revision)
        doc = source.parse(current.source, current.format)
        errors = [finding for finding in validate(doc) if finding.severity == "error"]
        if errors:
            raise DefinitionError(errors)
        return publish(doc, user=_user(user), message=message.strip())
