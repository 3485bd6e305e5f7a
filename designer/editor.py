"""What the editor page shows for a draft: its graph (problems outlined, the selected state
thick), the findings with their states, the selected state's panel, the source, and the
operations a person may do. Read-only: the views call drafts.py to change anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.utils.safestring import SafeString

from monitoring.graph_looks import StateMark
from monitoring.graph_text import condition_text
from monitoring.graphs import GraphRenderError, htmx_links, render_svg
from orchestrator.engine.definition import build_definition
from orchestrator.engine.validator import Finding

from .conditions import MODES, OPERATOR_WORDS, Row, context_paths, to_rows
from .drafts import Snapshot
from .dryrun import DryRun
from .edits import STARTERS, EditError, find, references, scopes, state_names
from .forms import WORKFLOW_FIELDS, state_form


@dataclass
class RuleLine:
    """A choice rule as the panel lists it."""

    index: int
    words: str
    target: str


@dataclass
class RuleBuilder:
    """One choice rule in the condition builder."""

    index: int
    is_new: bool
    mode: str
    rows: list[Row]
    target: str
    paths: list[str]  # what the path fields offer
    problems: list[str] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=lambda: dict(MODES))
    operators: dict[str, str] = field(default_factory=lambda: dict(OPERATOR_WORDS))


@dataclass
class Panel:
    """The selected state's side panel."""

    name: str
    type: str
    form: forms.Form
    referenced_by: list[str]  # what would break if it were deleted
    rules: list[RuleLine] = field(default_factory=list)  # a choice's rules, in order
    builder: RuleBuilder | None = None
    nested_rule: int | None = None  # a rule the builder cannot show: edit it as JSON
    stub: str = ""  # what it returns in a dry run (JSON), as this person set it


@dataclass
class DryRunForm:
    """What the dry run was given (as typed) and what it found."""

    input_text: str
    stubs_text: str = "{}"
    forced_text: str = "{}"
    problems: list[str] = field(default_factory=list)
    result: DryRun | None = None


@dataclass
class EditorView:
    snapshot: Snapshot
    graph: SafeString | None
    graph_problem: str
    findings: list[Finding]
    panel: Panel | None
    states: list[str]
    state_types: list[str] = field(default_factory=lambda: list(STARTERS))
    source_text: str = ""
    source_error: Any = None  # source.SourceError of a refused save, shown at its line
    message: str = ""  # an edit refused, or what the last one did
    dry: DryRunForm | None = None  # the dry run's inputs, and its result once run
    workflow_form: forms.Form | None = None  # the workflow's own settings, when no state is selected

    @property
    def trial_context(self) -> str:
        """What a trial of a state sees unless the person says otherwise: the sample input."""
        sample = self.snapshot.doc.get("sample_input", {})
        return json.dumps({"input": sample}, ensure_ascii=False)

    @property
    def is_start(self) -> bool:
        """Is the selected state where its line (the workflow or its branch) starts?"""
        return self.panel is not None and any(
            scope.get("start_at") == self.panel.name for scope, _ in scopes(self.snapshot.doc))


def state_link(name: str) -> str:
    return "?" + urlencode({"state": name})


def editor_view(snapshot: Snapshot, selected: str = "", *, form: forms.Form | None = None,
                source_text: str | None = None, source_error: Any = None, message: str = "",
                rule: int | None = None, builder: RuleBuilder | None = None,
                dry: DryRunForm | None = None, stubs: dict[str, Any] | None = None,
                workflow_form: forms.Form | None = None) -> EditorView:
    """``stubs``: the dry-run outputs this person set in the panels (state -> output)."""
    doc = snapshot.doc
    names = state_names(doc)
    findings = snapshot.findings
    problems = {f.state for f in findings if f.state and f.severity == "error"}
    graph, graph_problem = None, ""
    marks = _path_marks(dry.result) if dry is not None and dry.result is not None else None
    try:  # drawn as soon as the document has the shape of a definition, findings or not
        svg = render_svg(build_definition(doc), selected=selected if selected in names else None,
                         link=state_link, highlights={name: "problem" for name in problems}, marks=marks)
        graph = htmx_links(svg)
    except GraphRenderError as exc:
        graph_problem = f"The graph cannot be drawn: {exc}"
    except (AttributeError, KeyError, TypeError, ValueError):
        graph_problem = "The graph is drawn once the draft has the shape of a definition: fix the schema findings."
    panel = None
    if selected in names:
        _, raw = find(doc, selected)
        kind = raw.get("type", "")
        panel = Panel(selected, kind, form or state_form(kind, raw, names),
                      [str(ref) for ref in references(doc, selected) if ref.holder != selected])
        if kind == "choice":
            _choice_panel(panel, doc, raw, rule, builder)
    elif selected and not message:
        message = str(EditError(f"there is no state named {selected!r}"))
    if dry is None:
        sample = doc.get("sample_input", {})
        dry = DryRunForm(json.dumps(sample, indent=2, ensure_ascii=False),
                         json.dumps(stubs or {}, indent=2, ensure_ascii=False))
    if panel is not None and stubs and panel.name in stubs:
        panel.stub = json.dumps(stubs[panel.name], ensure_ascii=False)
    if panel is None and workflow_form is None:
        workflow_form = state_form("workflow", doc, names, specs=WORKFLOW_FIELDS)
    return EditorView(snapshot, graph, graph_problem, findings, panel, names,
                      source_text=snapshot.revision.source if source_text is None else source_text,
                      source_error=source_error, message=message, dry=dry, workflow_form=workflow_form)


def _path_marks(result: DryRun) -> dict[str, StateMark]:
    """The dry run's path on the graph: the states it went through, and where it failed."""
    marks = {name: StateMark.VISITED for name in result.visited}
    if result.outcome != "succeeded" and result.steps:
        marks[result.steps[-1].state] = StateMark.FAILED
    return marks


def _choice_panel(panel: Panel, doc: dict[str, Any], raw: dict[str, Any], rule: int | None,
                  builder: RuleBuilder | None) -> None:
    """A choice's rules in words, and the builder for the rule asked for (``rule``: its index,
    one past the last for a new one), or the builder as it was posted (``builder``)."""
    rules = raw.get("choices") if isinstance(raw.get("choices"), list) else []
    panel.rules = [RuleLine(i, condition_text(r.get("condition")) if isinstance(r, dict) else "?",
                            str(r.get("next", "")) if isinstance(r, dict) else "")
                   for i, r in enumerate(rules)]
    if builder is not None:
        panel.builder = builder
        return
    if rule is None or not 0 <= rule <= len(rules):
        return
    paths = context_paths(doc, panel.name)
    if rule == len(rules):
        panel.builder = RuleBuilder(rule, True, "all", [Row()], "", paths)
        return
    shown = to_rows(rules[rule].get("condition") if isinstance(rules[rule], dict) else None)
    if shown is None:
        panel.nested_rule = rule
        return
    panel.builder = RuleBuilder(rule, False, shown[0], shown[1], str(rules[rule].get("next", "")), paths)
