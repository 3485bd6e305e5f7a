"""The side panel's form for each state type: the fields a state of that type has (the keys of
the definition schema), each with the widget that suits it. Plain values are text, number and
check boxes; a field that names a state is a list of the draft's states; a task's handler is a
list of the registered handlers with their docstrings; nested structures (retry rules, choice
rules, branches, schemas) are JSON, checked as JSON. An empty field removes the key."""

from __future__ import annotations

import inspect
from typing import Any

from django import forms
from django.contrib.auth.models import Group

from orchestrator.engine.registry import get_handler, handler_names
from orchestrator.engine.schema import CONFLICT_POLICIES, JOIN_MODES, REDUCER_STRATEGIES
from orchestrator.models.workflows import Topology

TEXT, NUMBER, WHOLE, FLAG, LONG, JSON, STATE, HANDLER, CHOICE, GROUPS = (
    "text", "number", "whole", "flag", "long", "json", "state", "handler", "choice", "groups")
# A field named "a.b" sets key b of the mapping at key a (created when one of its fields is set,
# removed when none is); CHOICE fields take their options from OPTIONS.
OPTIONS: dict[str, list[str]] = {
    "reducer.strategy": REDUCER_STRATEGIES, "reducer.on_conflict": CONFLICT_POLICIES,
    "join.mode": JOIN_MODES, "topology": [value for value, _ in Topology.choices],
}

DEFAULT_ON = {"four_eyes": True}
COMMON_TAIL = [("queue", TEXT, "queue its workers read (a pool of its own)"), ("title", TEXT, "shown on the graph"),
               ("comment", LONG, "a note for the people who edit this workflow")]
FLOW = [("next", STATE, "what runs after it"), ("end", FLAG, "the run (or branch) ends after it")]
CONTRACT = [("input", JSON, "input mapping: name -> path into the context"),
            ("input_schema", JSON, "JSON Schema its input must match"),
            ("output_schema", JSON, "JSON Schema its output must match"),
            ("result_path", TEXT, "where its output goes in the context")]
RESILIENCE = [("timeout_seconds", NUMBER, "a try fails as timed out after this"),
              ("heartbeat_seconds", NUMBER, "the handler must call ctx.heartbeat() this often"),
              ("retry", JSON, 'retry rules, e.g. [{"max_attempts": 3, "interval_seconds": 2}]'),
              ("catch", JSON, 'catch rules, e.g. [{"errors": ["*"], "next": "undo"}]'),
              ("requires_approval", JSON, "a person approves the transition out of it")]

REDUCING = [("reducer.strategy", CHOICE, "how the outputs merge"),
            ("reducer.on_conflict", CHOICE, "when outputs disagree"),
            ("reducer.path", TEXT, "the field compared (highest score, majority vote)"),
            ("reducer.handler", TEXT, "a registered reducer (custom)")]
WORKFLOW_FIELDS = [("title", TEXT, "shown on the workflow's pages"), ("description", LONG, "what it is for"),
                   ("topology", CHOICE, "checked by the validator"),
                   ("budgets.max_steps", WHOLE, "steps a run may take (a loop needs it)"),
                   ("budgets.max_tokens", WHOLE, "model tokens a run may use"),
                   ("budgets.max_cost", NUMBER, "money a run may spend"),
                   ("budgets.max_depth", WHOLE, "handoffs a run may make"),
                   ("budgets.max_parallel_agents", WHOLE, "branches at work at once"),
                   ("timeout_seconds", NUMBER, "a run's deadline"),
                   ("input_schema", JSON, "JSON Schema a run's input must match"),
                   ("sample_input", JSON, "what the start form and the dry run are prefilled with")]

FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "task": [("handler", HANDLER, "the registered function it calls"), ("args", JSON, "fixed arguments"),
             *FLOW, *RESILIENCE, *CONTRACT, *COMMON_TAIL],
    "agent": [("provider", TEXT, "offline, or openai (OpenAI-compatible)"), ("model", TEXT, "the model's name"),
              ("instructions", LONG, "the system prompt"), ("tools", JSON, 'tools it may call, e.g. ["lookup"]'),
              ("routes", JSON, "states it may pick next (a pick outside them is refused)"), *FLOW,
              *RESILIENCE, *CONTRACT, *COMMON_TAIL],
    "choice": [("choices", JSON, 'rules in order, e.g. [{"condition": {"path": "amount", "op": "gt", '
                                 '"value": 100}, "next": "review"}]'),
               ("default", STATE, "where a run goes when no rule matches"), ("title", TEXT, "shown on the graph"),
               ("comment", LONG, "a note")],
    "wait": [("seconds", NUMBER, "how long it waits"), ("seconds_path", TEXT, "or a context path holding seconds"),
             *FLOW, ("title", TEXT, "shown on the graph")],
    "approval": [("title", TEXT, "what the approver is asked"),
                 ("approvers.groups", GROUPS, "who may decide (none: anyone with the decide permission)"),
                 ("approvers.permissions", JSON, 'or by permission: ["orchestrator.decide_approval"]'),
                 ("four_eyes", FLAG, "the person who started the run may not decide"),
                 ("due_seconds", NUMBER, "when a decision is due"), ("on_timeout", TEXT, "outcome when overdue"),
                 ("escalation", JSON, '{"approvers": {"groups": ["leads"]}, "due_seconds": 3600}'),
                 ("outcomes", JSON, 'labelled outcomes: {"ask_more": "collect"}'),
                 ("reject", STATE, "where a rejection leads"), ("show", JSON, "context paths shown to the approver"),
                 ("editable", TEXT, "a context path the approver may correct"), *FLOW, *COMMON_TAIL],
    "parallel": [("branches", JSON, "branch name -> {start_at, states}"),
                 ("join.mode", CHOICE, "all branches, a quorum, or the first N"),
                 ("join.count", WHOLE, "for quorum and first: how many"),
                 ("join.timeout_seconds", NUMBER, "the join fails as a coordination deadlock after this"),
                 *REDUCING, *FLOW,
                 ("requires_approval", JSON, "a person approves the transition out of it"), *COMMON_TAIL],
    "map": [("items_path", TEXT, "context path of the list"), ("max_concurrency", WHOLE, "items at once"),
            ("tolerated_failure_percentage", NUMBER, "failed items allowed, in %"),
            ("iterator", JSON, "{start_at, states} run for each item"), *REDUCING,
            *FLOW, *COMMON_TAIL],
    "handoff": [("to", STATE, "the agent state that takes over"), ("input", JSON, "the part of the context passed"),
                ("title", TEXT, "shown on the graph")],
    "subworkflow": [("workflow", TEXT, "the published workflow it starts"), ("version", WHOLE, "empty: the latest"),
                    *FLOW, *RESILIENCE, *CONTRACT, *COMMON_TAIL],
    "succeed": [("output_path", TEXT, "the part of the context that is the output"), ("title", TEXT, "")],
    "fail": [("error", TEXT, "the error's name"), ("cause", TEXT, "what happened, in words"), ("title", TEXT, "")],
}


def handler_choices() -> list[tuple[str, str]]:
    """(name, name and the first line of its docstring) of every registered handler."""
    found = []
    for name in sorted(handler_names()):
        doc = inspect.getdoc(get_handler(name)) or ""
        first = doc.splitlines()[0] if doc else ""
        found.append((name, f"{name}: {first}" if first else name))
    return found


def _get(raw: dict[str, Any], name: str, default: Any = None) -> Any:
    """The value of a field: ``raw[name]``, or ``raw[a][b]`` for a field named "a.b"."""
    outer, _, inner = name.partition(".")
    if not inner:
        return raw.get(name, default)
    nested = raw.get(outer)
    return nested.get(inner, default) if isinstance(nested, dict) else default


def state_form(state_type: str, raw: dict[str, Any], states: list[str], data: Any = None,
               specs: list[tuple[str, str, str]] | None = None) -> forms.Form:
    """The panel's form for a state of ``state_type``, filled from its ``raw`` fields (or bound to
    ``data``); ``states``: the draft's state names, for the fields that name one. ``specs``
    replaces the type's fields (the workflow's own settings use WORKFLOW_FIELDS)."""
    fields: dict[str, forms.Field] = {}
    initial: dict[str, Any] = {}
    handlers = handler_choices()
    for name, kind, help_text in specs if specs is not None else FIELDS.get(state_type, []):
        value = _get(raw, name, DEFAULT_ON.get(name))
        if kind == CHOICE:
            options = OPTIONS[name]
            choices = [("", "(default)"), *((o, o) for o in options)]
            if value and value not in options:
                choices.append((value, f"{value} (unknown)"))
            field: forms.Field = forms.ChoiceField(required=False, choices=choices)
        elif kind == GROUPS:
            names = list(Group.objects.order_by("name").values_list("name", flat=True))
            names += [g for g in (value or []) if g not in names]  # a group named but not created yet
            field = forms.MultipleChoiceField(required=False, choices=[(g, g) for g in names],
                                              widget=forms.CheckboxSelectMultiple)
        elif kind == FLAG:
            field = forms.BooleanField(required=False)
        elif kind == NUMBER:
            field = forms.FloatField(required=False)
        elif kind == WHOLE:
            field = forms.IntegerField(required=False, min_value=0)
        elif kind == LONG:
            field = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
        elif kind == JSON:
            field = forms.JSONField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "json"}))
        elif kind == STATE:
            choices = [("", "(none)"), *((s, s) for s in states)]
            if value and value not in states:  # a dangling reference stays as it is until changed
                choices.append((value, f"{value} (no such state)"))
            field = forms.ChoiceField(required=False, choices=choices)
        elif kind == HANDLER:
            known = dict(handlers)
            choices = [("", "(choose a handler)"), *handlers]
            if value and value not in known:  # keep an unknown one visible: the validator reports it
                choices.append((value, f"{value} (not registered)"))
            field = forms.ChoiceField(required=False, choices=choices)
        else:
            field = forms.CharField(required=False, max_length=500)
        field.help_text = help_text
        fields[name.replace(".", "__")] = field
        field.label = name
        initial[name.replace(".", "__")] = value
    form_class = type(f"{state_type.title()}StateForm", (forms.Form,), fields)
    return form_class(data=data, initial=initial, prefix="state")


def changed_fields(form: forms.Form, state_type: str, raw: dict[str, Any] | None = None,
                   specs: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """What a valid form sets: each field's value, None (remove the key) for an empty one; a
    flag at its default is removed too (``four_eyes`` is on by default: only off is written)."""
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, kind, _ in specs if specs is not None else FIELDS.get(state_type, []):
        value = form.cleaned_data.get(name.replace(".", "__"))
        if kind == FLAG:
            default = DEFAULT_ON.get(name, False)
            value = None if bool(value) == default else bool(value)
        elif kind == NUMBER and value is not None and float(value).is_integer():
            value = int(value)
        elif value in ("", None, []):
            value = None
        outer, _, inner = name.partition(".")
        if inner:
            nested.setdefault(outer, {})[inner] = value
        else:
            values[name] = value
    for outer, parts in nested.items():  # keys the panel does not show are kept
        kept = dict((raw or {}).get(outer) or {}) if isinstance((raw or {}).get(outer), dict) else {}
        kept.update(parts)
        merged = {key: value for key, value in kept.items() if value is not None}
        values[outer] = merged or None
    return values
