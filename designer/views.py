"""The designer's pages: the drafts list and the editor. Every change goes through drafts.py
(one function each, revision-checked); a view answers the whole page or, for htmx, the editor
fragment from the same template. Changing a draft needs ``designer.change_draft``, publishing
``orchestrator.add_workflowversion``; seeing, and what only touches the person's own session
(a dry run, its stubs, the clipboard), ``designer.view_draft``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from monitoring.graphs import GraphRenderError, render_png, render_svg
from orchestrator.engine.definition import build_definition
from orchestrator.engine.errors import DefinitionError
from orchestrator.models import Workflow, WorkflowVersion

from . import conditions, drafts, edits, source
from .comparison import comparison
from .dryrun import dry_run as run_dry
from .editor import DryRunForm, RuleBuilder, editor_view
from .forms import WORKFLOW_FIELDS, changed_fields, state_form
from .listing import listing
from .models import Draft, DraftRevision, Trial
from .starters import STARTER_NAMES, starter_source
from .trials import start_trial

TEMPLATE = "designer/editor.html"
STOP_POLLING = 286  # htmx stops polling on this status
EXPORTS = ("yaml", "json", "svg", "png")


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_safe
def draft_list(request: HttpRequest) -> HttpResponse:
    """Every workflow and draft, filtered by the query string (``q``, ``topology``, ``status``)."""
    return render(request, "designer/draft_list.html", {"listing": listing(request.GET), "starters": STARTER_NAMES})


@require_POST
@permission_required("designer.add_draft", raise_exception=True)
def new_draft(request: HttpRequest) -> HttpResponse:
    """A new draft from a starter, an uploaded file, or a copy of another draft (``copy_of``)."""
    name = request.POST.get("name", "").strip()
    starter, copy_of = request.POST.get("starter", "empty"), request.POST.get("copy_of", "")
    upload = request.FILES.get("file")
    try:
        if not edits.NAME.match(name):
            raise edits.EditError("a workflow name uses letters, digits, _ and - (a letter or _ first)")
        if Workflow.objects.filter(name=name).exists():
            raise edits.EditError(f"a workflow named {name!r} exists: open it in the designer instead")
        if upload is not None:
            fmt, origin = ("json" if upload.name.endswith(".json") else "yaml"), upload.name
            text = upload.read().decode("utf-8", "replace")
        elif copy_of:
            fmt, text = drafts.copy_source(_draft(copy_of, request.user), name)
            origin = f"a copy of {copy_of}"
        else:
            fmt, text, origin = "yaml", starter_source(starter, name), starter
        drafts.create_draft(name, text, fmt, request.user, note=f"created from {origin}")
    except (edits.EditError, source.SourceError) as exc:
        return render(request, "designer/draft_list.html", {
            "listing": listing(QueryDict()), "starters": STARTER_NAMES, "error": str(exc), "typed": name}, status=400)
    return redirect("designer:editor", name=name)


def _render(request: HttpRequest, draft: Draft, status: int = 200, **kwargs: Any) -> HttpResponse:
    selected = kwargs.pop("selected", request.GET.get("state", "") or request.POST.get("state", ""))
    published = kwargs.pop("published", None)
    shown_trial = kwargs.pop("trial", None)
    stale = kwargs.pop("stale", None)  # the revision a refused (stale) change was made on
    stubs = request.session.get(STUBS, {}).get(draft.name, {})
    view = editor_view(drafts.snapshot(draft), selected, stubs=stubs, **kwargs)
    template = "designer/_editor.html" if request.htmx else TEMPLATE  # the page, or the editor swapped
    latest = WorkflowVersion.objects.filter(workflow__name=draft.name).order_by("-number").values_list(
        "number", flat=True).first()
    return render(request, template, {"view": view, "draft": draft, "formats": DraftRevision.Format.choices,
                                      "published": published, "exports": EXPORTS, "latest": latest,
                                      "clipboard": request.session.get(CLIPBOARD), "trial": shown_trial,
                                      "stale": stale},
                  status=status)


def _draft(name: str, user: Any) -> Draft:
    try:
        return drafts.open_draft(name, user)
    except Draft.DoesNotExist:
        return get_object_or_404(Draft, name=name)


def _index(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_safe
def export(request: HttpRequest, name: str, fmt: str) -> HttpResponse:
    """The draft as a file: its definition (yaml, json) or its graph (svg, png)."""
    if fmt not in EXPORTS:
        raise Http404(f"no export as {fmt!r}; use one of {', '.join(EXPORTS)}")
    draft = _draft(name, request.user)
    snap = drafts.snapshot(draft)
    if fmt in ("yaml", "json"):
        text = snap.revision.source if fmt == snap.revision.format else source.dump(
            source.load(snap.revision.source, snap.revision.format), fmt)
        body, kind = text.encode("utf-8"), "application/yaml" if fmt == "yaml" else "application/json"
    else:
        try:
            definition = build_definition(snap.doc)
            body = (render_svg(definition).encode("utf-8") if fmt == "svg" else render_png(definition))
        except (GraphRenderError, KeyError, TypeError, ValueError) as exc:
            return HttpResponse(f"the graph cannot be drawn: {exc}", status=400, content_type="text/plain")
        kind = "image/svg+xml" if fmt == "svg" else "image/png"
    response = HttpResponse(body, content_type=kind)
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_safe
def editor(request: HttpRequest, name: str) -> HttpResponse:
    """The editor; ``?state=`` selects a state, ``&rule=`` opens a choice rule in the builder."""
    return _render(request, _draft(name, request.user), rule=_index(request.GET.get("rule")))


def _posted_builder(request: HttpRequest, doc: Any, state: str, index: int) -> RuleBuilder:
    """The builder as posted: its rows (one more, or one fewer, when asked), mode and target."""
    post = request.POST
    count = _index(post.get("rows")) or 0
    rows = [conditions.Row(post.get(f"path_{i}", ""), post.get(f"op_{i}", "eq"), post.get(f"value_{i}", ""),
                           bool(post.get(f"not_{i}"))) for i in range(min(count, 50))]
    action = post.get("action", "save")
    if action == "add_row":
        rows.append(conditions.Row())
    elif action.startswith("remove_") and (gone := _index(action.removeprefix("remove_"))) is not None:
        rows = [row for i, row in enumerate(rows) if i != gone]
    rules = edits.find(doc, state)[1].get("choices") or []
    return RuleBuilder(index, index >= len(rules), post.get("mode", "all"), rows, post.get("target", ""),
                       conditions.context_paths(doc, state))


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def save_rule(request: HttpRequest, name: str) -> HttpResponse:
    """The condition builder's form: add or remove a row (nothing saved), or save the rule."""
    draft = get_object_or_404(Draft, name=name)
    state, index = request.POST.get("state", ""), _index(request.POST.get("rule"))
    snap = drafts.snapshot(draft)
    try:
        if index is None:
            raise edits.EditError("which rule? (rule is missing)")
        builder = _posted_builder(request, snap.doc, state, index)
    except edits.EditError as exc:
        return _render(request, draft, 400, message=str(exc), selected=state)
    if request.POST.get("action", "save") != "save":
        return _render(request, draft, selected=state, builder=builder)
    condition, problems = conditions.from_rows(builder.mode, builder.rows)
    if not builder.target:
        problems.append("choose the state the rule leads to")
    if problems:
        builder.problems = problems
        return _render(request, draft, 400, selected=state, builder=builder,
                       message="the rule was not saved: see the problems in the builder")
    return _change(request, name, lambda d, seen: drafts.apply_edit(
        d.pk, seen, lambda doc: edits.set_rule(doc, state, index, condition, builder.target), request.user),
        selected=state, say=True)


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def delete_rule(request: HttpRequest, name: str) -> HttpResponse:
    state, index = request.POST.get("state", ""), _index(request.POST.get("rule"))
    return _change(request, name, lambda d, seen: drafts.apply_edit(
        d.pk, seen, lambda doc: edits.delete_rule(doc, state, -1 if index is None else index), request.user),
        selected=state, say=True)


def _seen(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("revision", ""))
    except ValueError:
        return -1


def _change(request: HttpRequest, name: str, run: Callable[[Draft, int], Any], *, selected: str = "",
            after: str | Callable[[], str] | None = None, say: bool = False) -> HttpResponse:
    """Run a change; answer the editor again with ``after`` selected (a name, or a function that
    gives it once the change ran; and, with ``say``, the new revision's note), or with the refusal
    (400, or 409 when stale) and ``selected`` kept."""
    draft = get_object_or_404(Draft, name=name)
    try:
        run(draft, _seen(request))
    except (drafts.StaleDraft, edits.EditError, source.SourceError) as exc:
        draft.refresh_from_db()
        stale = isinstance(exc, drafts.StaleDraft)
        return _render(request, draft, 409 if stale else 400, message=str(exc), selected=selected,
                       stale=_seen(request) if stale else None)
    draft.refresh_from_db()
    note = draft.revisions.get(number=draft.revision).note if say else ""
    chosen = selected if after is None else after() if callable(after) else after
    return _render(request, draft, selected=chosen, message=note)


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def edit(request: HttpRequest, name: str) -> HttpResponse:
    """One graph edit: add, connect, make start, rename or delete a state (``op``)."""
    op, post = request.POST.get("op", ""), request.POST
    state = post.get("state", "")
    if op == "add":
        new = post.get("name", "").strip()

        def change(doc: Any) -> str:
            edits.add_state(doc, new, post.get("type", ""), after=state or None)
            return f"added {post.get('type')} state {new}" + (f" after {state}" if state else "")
        selected = new
    elif op == "start":
        def change(doc: Any) -> str:
            return edits.make_start(doc, state)
        selected = state
    elif op == "connect":
        def change(doc: Any) -> str:
            return edits.connect(doc, state, post.get("target", ""))
        selected = state
    elif op == "rename":
        new = post.get("name", "").strip()

        def change(doc: Any) -> str:
            followed = edits.rename(doc, state, new)
            return f"renamed {state} to {new} ({followed} reference{'s' if followed != 1 else ''} followed)"
        selected = new
    elif op == "delete":
        def change(doc: Any) -> str:
            broken = edits.delete_state(doc, state)
            return f"deleted {state}" + (f"; still named by {', '.join(map(str, broken))}" if broken else "")
        selected = ""
    else:
        return _change(request, name, lambda d, s: _refuse(f"unknown edit {op!r}"), selected=state)
    return _change(request, name, lambda d, seen: drafts.apply_edit(d.pk, seen, change, request.user),
                   selected=state, after=selected, say=True)


def _refuse(message: str) -> None:
    raise edits.EditError(message)


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def save_state(request: HttpRequest, name: str) -> HttpResponse:
    """The panel's form: set the selected state's fields."""
    draft = get_object_or_404(Draft, name=name)
    state = request.POST.get("state", "")
    snap = drafts.snapshot(draft)
    try:
        _, raw = edits.find(snap.doc, state)
    except edits.EditError as exc:
        return _render(request, draft, 400, message=str(exc))
    form = state_form(raw.get("type", ""), raw, edits.state_names(snap.doc), data=request.POST)
    if not form.is_valid():
        return _render(request, draft, 400, form=form, selected=state,
                       message="the panel has fields to correct: see beside them")
    values = changed_fields(form, raw.get("type", ""), raw)
    return _change(request, name, lambda d, seen: drafts.apply_edit(
        d.pk, seen, lambda doc: _set(doc, state, values), request.user), selected=state, say=True)


def _set(doc: Any, state: str, values: dict[str, Any]) -> str:
    edits.set_fields(doc, state, values)
    return f"changed {state}"


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def save_source(request: HttpRequest, name: str) -> HttpResponse:
    """The Source tab's save: parsed and checked, or refused with its line, the draft untouched."""
    text, fmt = request.POST.get("source", ""), request.POST.get("format", "yaml")
    draft = get_object_or_404(Draft, name=name)
    try:
        drafts.save_source(draft.pk, _seen(request), text, fmt, request.user)
    except source.SourceError as exc:
        return _render(request, draft, 400, source_text=text, source_error=exc,
                       message=f"not saved: {exc}")
    except drafts.StaleDraft as exc:
        draft.refresh_from_db()
        return _render(request, draft, 409, source_text=text, message=str(exc), stale=_seen(request))
    draft.refresh_from_db()
    return _render(request, draft, message="source saved")


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def undo(request: HttpRequest, name: str) -> HttpResponse:
    return _change(request, name, lambda d, seen: drafts.move(d.pk, seen, -1), selected=request.POST.get("state", ""))


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def redo(request: HttpRequest, name: str) -> HttpResponse:
    return _change(request, name, lambda d, seen: drafts.move(d.pk, seen, +1), selected=request.POST.get("state", ""))


@require_POST
@permission_required("orchestrator.add_workflowversion", raise_exception=True)
def publish(request: HttpRequest, name: str) -> HttpResponse:
    draft = get_object_or_404(Draft, name=name)
    try:
        version, created = drafts.publish_draft(draft.pk, _seen(request), request.POST.get("message", ""),
                                                request.user)
    except DefinitionError as exc:
        return _render(request, draft, 400, message="not published: " + "; ".join(f.message for f in exc.findings))
    except drafts.StaleDraft as exc:
        draft.refresh_from_db()
        return _render(request, draft, 409, message=str(exc), stale=_seen(request))
    words = (f"published as version {version.number}" if created
             else f"not published again: version {version.number} has this content")
    if request.htmx:
        return _render(request, draft, message=words, published=version)
    messages.success(request, words)
    return redirect(reverse("designer:editor", args=[name]))


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_safe
def versions(request: HttpRequest, name: str) -> HttpResponse:
    """The published versions of a workflow, newest first, with their messages."""
    workflow = get_object_or_404(Workflow, name=name)
    found = workflow.versions.select_related("created_by").order_by("-number")
    return render(request, "designer/versions.html", {"workflow": workflow, "versions": found,
                                                      "has_draft": Draft.objects.filter(name=name).exists()})


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_safe
def compare(request: HttpRequest, name: str) -> HttpResponse:
    """Two definitions (``?a=1&b=2``: versions; ``draft``; ``r3``, a revision of the draft) side by
    side: the newer one's graph with added and changed states outlined, and every change in words."""
    if not (Workflow.objects.filter(name=name).exists() or Draft.objects.filter(name=name).exists()):
        raise Http404(f"no workflow or draft named {name!r}")
    try:
        found = comparison(name, request.GET.get("a", ""), request.GET.get("b", ""))
    except edits.EditError as exc:
        return render(request, "designer/compare.html", {"name": name, "error": str(exc)}, status=400)
    return render(request, "designer/compare.html", {"name": name, **found})


def _json_field(text: str, label: str, problems: list[str], want: type) -> Any:
    try:
        value = json.loads(text or ("{}" if want is dict else "null"))
    except ValueError as exc:
        problems.append(f"{label} is not JSON: {exc}")
        return None
    if want is dict and not isinstance(value, dict):
        problems.append(f"{label} must be an object: state name -> value")
        return None
    return value


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_POST
def dry_run(request: HttpRequest, name: str) -> HttpResponse:
    """Step through the draft with the input, stubs and forced outcomes given: nothing runs."""
    draft = get_object_or_404(Draft, name=name)
    post = request.POST
    form = DryRunForm(post.get("input", ""), post.get("stubs", "{}"), post.get("forced", "{}"))
    run_input = _json_field(form.input_text, "the input", form.problems, object)
    stubs = _json_field(form.stubs_text, "the stubs", form.problems, dict)
    forced = _json_field(form.forced_text, "the forced outcomes", form.problems, dict)
    snap = drafts.snapshot(draft)
    if snap.errors:
        form.problems.append("fix the errors in the findings first: a dry run follows a valid definition")
    if form.problems:
        return _render(request, draft, 400, dry=form, message="the dry run did not start: see its problems")
    form.result = run_dry(snap.doc, run_input, stubs, forced)
    return _render(request, draft, dry=form, message=f"dry run: {form.result.outcome}")


CLIPBOARD = "designer_clipboard"
STUBS = "designer_stubs"  # draft name -> state -> the output it returns in this person's dry runs


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_POST
def set_stub(request: HttpRequest, name: str) -> HttpResponse:
    """Set (or, empty, forget) what the selected state returns in this person's dry runs; kept
    in their session: a dry run's stubs are nobody else's and never part of the definition."""
    draft = get_object_or_404(Draft, name=name)
    state, text = request.POST.get("state", ""), request.POST.get("stub", "").strip()
    stubs = request.session.get(STUBS, {})
    mine = dict(stubs.get(name, {}))
    if not text:
        mine.pop(state, None)
    else:
        try:
            mine[state] = json.loads(text)
        except ValueError as exc:
            return _render(request, draft, 400, selected=state, message=f"the dry-run output is not JSON: {exc}")
    request.session[STUBS] = {**stubs, name: mine}
    return _render(request, draft, selected=state, message=f"{state} returns this in your dry runs" if text
                   else f"{state} returns {{}} in your dry runs")


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_POST
def copy_state(request: HttpRequest, name: str) -> HttpResponse:
    """Copy the selected state to this person's clipboard (their session), to paste in any draft."""
    draft = get_object_or_404(Draft, name=name)
    state = request.POST.get("state", "")
    try:
        _, raw = edits.find(drafts.snapshot(draft).doc, state)
    except edits.EditError as exc:
        return _render(request, draft, 400, message=str(exc))
    request.session[CLIPBOARD] = {"name": state, "raw": raw, "from": name}
    return _render(request, draft, selected=state, message=f"copied {state}: paste it in any draft")


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def paste_state(request: HttpRequest, name: str) -> HttpResponse:
    copied = request.session.get(CLIPBOARD)
    if not copied:
        return _change(request, name, lambda d, s: _refuse("the clipboard is empty: copy a state first"))
    pasted: list[str] = []

    def change(doc: Any) -> str:
        pasted.append(edits.paste_state(doc, copied["name"], copied["raw"]))
        return f"pasted {copied['name']} from {copied['from']} as {pasted[0]}"

    return _change(request, name, lambda d, seen: drafts.apply_edit(d.pk, seen, change, request.user),
                   after=lambda: pasted[0], say=True)


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def test_state(request: HttpRequest, name: str) -> HttpResponse:
    """Run the selected task state's handler once on a worker, its effects recorded, not done."""
    draft = get_object_or_404(Draft, name=name)
    state = request.POST.get("state", "")
    problems: list[str] = []
    context = _json_field(request.POST.get("context", ""), "the context", problems, dict)
    if problems:
        return _render(request, draft, 400, selected=state, message=problems[0])
    try:
        trial = start_trial(draft, state, context, request.user)
    except edits.EditError as exc:
        return _render(request, draft, 400, selected=state, message=str(exc))
    return _render(request, draft, selected=state, trial=trial,
                   message=f"trying {state} on a worker of queue {trial.queue}")


@login_required
@permission_required("designer.view_draft", raise_exception=True)
@require_safe
def trial(request: HttpRequest, name: str, trial_id: int) -> HttpResponse:
    """A trial's card, polled until it ends (then 286 stops the polling)."""
    found = get_object_or_404(Trial, pk=trial_id, draft__name=name)
    response = render(request, "designer/_trial.html", {"trial": found, "draft": found.draft})
    if found.is_finished and request.htmx:
        response.status_code = STOP_POLLING
    return response


@require_POST
@permission_required("designer.change_draft", raise_exception=True)
def save_workflow(request: HttpRequest, name: str) -> HttpResponse:
    """The workflow's own settings (title, topology, budgets, deadline, input schema, sample)."""
    draft = get_object_or_404(Draft, name=name)
    doc = drafts.snapshot(draft).doc
    form = state_form("workflow", doc, edits.state_names(doc), data=request.POST, specs=WORKFLOW_FIELDS)
    if not form.is_valid():
        return _render(request, draft, 400, workflow_form=form,
                       message="the workflow's settings have fields to correct: see beside them")
    values = changed_fields(form, "workflow", doc, WORKFLOW_FIELDS)

    def change(tree: Any) -> str:
        for key, value in values.items():
            if value is None:
                tree.pop(key, None)
            else:
                tree[key] = value
        return "changed the workflow's settings"

    return _change(request, name, lambda d, seen: drafts.apply_edit(d.pk, seen, change, request.user), say=True)
