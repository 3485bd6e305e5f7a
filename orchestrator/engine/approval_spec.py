"""What an approval asks of people, read from a definition: an ``approval`` state, or the
``requires_approval`` gate on a state's outgoing transition.

    approvers:   {groups: [...], permissions: ["app.codename", ...]}   (default: the
                 orchestrator.decide_approval permission)
    four_eyes:   the person who started the run may not decide (default true)
    due_seconds: when the request is due (it shows as overdue after)
    on_timeout:  what happens when it is due: an outcome (approve, reject, a label) or
                 "escalate" (to ``escalation``, with its own approvers, due time and outcome)
    outcomes:    labelled outcomes, each leading to a state (approve and reject always exist)
    reject:      the state a rejection leads to (default: the line fails as rejected)
    show:        context keys shown to the reviewer (default: everything the line sees; a
                 gate: the gated state's output and the run's input)
    editable:    a context path (``draft`` or ``draft.content``) the reviewer may replace
                 before the run goes on (a gate: true means the gated state's own output)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APPROVE, REJECT, ESCALATE = "approve", "reject", "escalate"
DEFAULT_PERMISSION = "orchestrator.decide_approval"
STATE_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
CONTEXT_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"

_approvers = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "groups": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 150},
                   "uniqueItems": True},
        "permissions": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*\.[a-z0-9_]+$"},
                        "uniqueItems": True},
    },
}
_outcome_name = {"type": "string", "pattern": STATE_KEY}
# The JSON Schema of the keys an approval state and a gate share (schema.py uses it).
APPROVAL_PROPERTIES: dict[str, Any] = {
    "title": {"type": "string", "maxLength": 200},
    "approvers": _approvers,
    "four_eyes": {"type": "boolean"},
    "due_seconds": {"type": "number", "exclusiveMinimum": 0},
    "on_timeout": _outcome_name,
    "escalation": {
        "type": "object",
        "additionalProperties": False,
        "required": ["approvers"],
        "properties": {
            "approvers": _approvers,
            "due_seconds": {"type": "number", "exclusiveMinimum": 0},
            "on_timeout": _outcome_name,
        },
    },
    "outcomes": {"type": "object", "propertyNames": {"pattern": STATE_KEY},
                 "additionalProperties": {"type": "string"}},
    "reject": {"type": "string"},
    "show": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
    "editable": {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": CONTEXT_PATH, "maxLength": 100}]},
}
GATE_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": APPROVAL_PROPERTIES}


@dataclass(frozen=True)
class Approvers:
    groups: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()

    @classmethod
    def from_raw(cls, raw: dict[str, Any] | None) -> Approvers:
        raw = raw or {}
        return cls(tuple(raw.get("groups") or ()), tuple(raw.get("permissions") or ()))

    @property
    def effective_permissions(self) -> tuple[str, ...]:
        """Nobody named: whoever holds the approval permission may decide."""
        return self.permissions if (self.groups or self.permissions) else (DEFAULT_PERMISSION,)

    def describe(self) -> str:
        named = [f"group {g}" for g in self.groups] + [f"permission {p}" for p in self.effective_permissions]
        return " or ".join(named)


@dataclass(frozen=True)
class Escalation:
    approvers: Approvers
    due_seconds: float | None = None
    on_timeout: str | None = None


@dataclass(frozen=True)
class ApprovalSpec:
    title: str = ""
    approvers: Approvers = Approvers()
    four_eyes: bool = True
    due_seconds: float | None = None
    on_timeout: str | None = None
    escalation: Escalation | None = None
    labelled: tuple[tuple[str, str], ...] = ()  # (outcome, state)
    reject_to: str | None = None
    show: tuple[str, ...] = ()
    editable: bool | str = False

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> ApprovalSpec:
        escalation = raw.get("escalation")
        return cls(
            title=raw.get("title", ""),
            approvers=Approvers.from_raw(raw.get("approvers")),
            four_eyes=bool(raw.get("four_eyes", True)),
            due_seconds=raw.get("due_seconds"),
            on_timeout=raw.get("on_timeout"),
            escalation=Escalation(Approvers.from_raw(escalation.get("approvers")), escalation.get("due_seconds"),
                                  escalation.get("on_timeout")) if escalation else None,
            labelled=tuple(sorted((raw.get("outcomes") or {}).items())),
            reject_to=raw.get("reject"),
            show=tuple(raw.get("show") or ()),
            editable=raw.get("editable", False),
        )

    @property
    def outcome_names(self) -> tuple[str, ...]:
        return (APPROVE, REJECT, *(name for name, _ in self.labelled))

    def targets(self) -> list[str]:
        """States the decisions lead to, besides approve's (a gate's target, a state's next)."""
        return [state for _, state in self.labelled] + ([self.reject_to] if self.reject_to else [])


def spec_findings(spec: ApprovalSpec, *, gate: bool) -> list[str]:
    """What is wrong with an approval's settings, each with how to fix it (the validator adds
    the state's name)."""
    problems = []
    where = "requires_approval: " if gate else ""
    for name in (APPROVE, REJECT, ESCALATE):
        if name in dict(spec.labelled):
            problems.append(f"{where}outcome '{name}' is built in; give the labelled outcome another name")
    timeouts = [("on_timeout", spec.on_timeout)]
    if spec.escalation is not None:
        timeouts.append(("escalation.on_timeout", spec.escalation.on_timeout))
    for key, value in timeouts:
        allowed = spec.outcome_names + ((ESCALATE,) if key == "on_timeout" else ())
        if value is not None and value not in allowed:
            problems.append(f"{where}{key} is '{value}'; use one of {', '.join(allowed)}")
    if spec.on_timeout is not None and spec.due_seconds is None:
        problems.append(f"{where}on_timeout needs due_seconds (when the timeout comes)")
    if spec.on_timeout == ESCALATE and spec.escalation is None:
        problems.append(f"{where}on_timeout is 'escalate' but no escalation says to whom; add escalation.approvers")
    if spec.escalation is not None and spec.on_timeout != ESCALATE:
        problems.append(f"{where}escalation is set but on_timeout is not 'escalate'; set it, or remove escalation")
    if spec.escalation is not None and spec.escalation.on_timeout is not None and spec.escalation.due_seconds is None:
        problems.append(f"{where}escalation.on_timeout needs escalation.due_seconds")
    if spec.editable is True and not gate:
        problems.append("editable must name the context path a reviewer may replace (true is for gates, where "
                        "it means the gated state's output)")
    return problems
