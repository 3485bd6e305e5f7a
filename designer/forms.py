"""The side panel's form for each state type: the fields a state of that type has (the keys of
the definition schema), each with the widget that suits it. Plain values are text, number and
check boxes; a field that names a state is a list of the draft's states; a task's handler is a
list of the registered handlers with their docstrings; nested structures (retry rules, choice
rules, branches, schemas) are JSON, checked as JSON. An empty field removes the key."""

from __future__ import annotations

import inspect
from typing import Any

from django import forms

from orchestrator.engine.registry import get_handler, handler_names

TEXT, NUMBER, WHOLE, FLAG, LONG, JSON, STATE, HANDLER = (
    "text", "number", "whole", "flag", "long", "json", "state", "handler")

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
    "approval": [("title", TEXT, "what the approver is asked"), ("approvers", JSON, '{"groups": ["approvers"]}'),
                 ("four_eyes", FLAG, "the person who started the run may not decide"),
                 ("due_seconds", NUMBER, "when a decision is due"), ("on_timeout", TEXT, "outcome when overdue"),
                 ("escalation", JSON, '{"approvers": {"groups": ["leads"]}, "due_seconds": 3600}'),
                 ("outcomes", JSON, 'labelled outcomes: {"ask_more": "collect"}'),
                 ("reject", STATE, "where a rejection leads"), ("show", JSON, "context paths shown to the approver"),
                 ("editable", TEXT, "a context path the approver may correct"), *FLOW, *COMMON_TAIL],
    "parallel": [("branches", JSON, "branch name -> {start_at, states}"),
                 ("join", JSON, '{"mode": "all"} or {"mode": "quorum", "count": 2, "timeout_seconds": 60}'),
                 ("reducer", JSON, '{"strategy": "collect", "on_conflict": "error"}'), *FLOW,
                 ("requires_approval", JSON, "a person approves the transition out of it"), *COMMON_TAIL],
    "map": [("items_path", TEXT, "context path of the list"), ("max_concurrency", WHOLE, "items at once"),
            ("tolerated_failure_percentage", NUMBER, "failed items allowed, in %"),
            ("iterator", JSON, "{start_at, states} run for each item"), ("reducer", JSON, "how items merge"),
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


def state_form(state_type: str, raw: dict[str, Any], states: list[str], data: Any = None) -> forms.Form:
    """The panel's form for a state of ``state_type``, filled from its ``raw`` fields (or bound to
    ``data``); ``states``: the draft's state names, for the fields that name one."""
    fields: dict[str, forms.Field] = {}
    initial: dict[str, Any] = {}
    handlers = handler_choices()
    for name, kind, help_text in FIELDS.get(state_type, []):
        value = raw.get(name, DEFAULT_ON.get(name))
        if kind == FLAG:
            field: forms.Field = forms.BooleanField(required=False)
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
        fields[name] = field
        initial[name] = value
    form_class = type(f"{state_type.title()}StateForm", (forms.Form,), fields)
    return form_class(data=data, initial=initial, prefix="state")


def changed_fields(form: forms.Form, state_type: str) -> dict[str, Any]:
    """What a valid form sets: each field's value, None (remove the key) for an empty one; a
    flag at its default is removed too (``four_eyes`` is on by default: only off is written)."""
    values: dict[str, Any] = {}
    for name, kind, _ in FIELDS.get(state_type, []):
        value = form.cleaned_data.get(name)
        if kind == FLAG:
            default = DEFAULT_ON.get(name, False)
            values[name] = None if bool(value) == default else bool(value)
        elif kind == NUMBER and value is not None and float(value).is_integer():
            values[name] = int(value)
        else:
            values[name] = None if value in ("", None) else value
    return values
