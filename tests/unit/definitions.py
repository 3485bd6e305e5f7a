"""Small definition documents for the validator's tests: state builders and checks."""

from __future__ import annotations

from typing import Any

from orchestrator.engine.validator import Finding

HANDLER = "demo.noop"  # registered at Django start-up by orchestrator/handlers.py


def task(next: str | None = None, *, end: bool | None = None, handler: str = HANDLER, **extra: Any) -> dict:
    state: dict[str, Any] = {"type": "task", "handler": handler, **extra}
    if next is not None:
        state["next"] = next
    if end is not None:
        state["end"] = end
    return state


def wait(next: str | None = None, *, end: bool | None = None, **extra: Any) -> dict:
    state: dict[str, Any] = {"type": "wait", **extra}
    if next is not None:
        state["next"] = next
    if end is not None:
        state["end"] = end
    return state


def choice(*rules: tuple[dict, str], default: str | None = None) -> dict:
    state: dict[str, Any] = {"type": "choice", "choices": [{"condition": c, "next": n} for c, n in rules]}
    if default is not None:
        state["default"] = default
    return state


def when(path: str = "input.flag", op: str = "eq", value: Any = True) -> dict:
    return {"path": path, "op": op, "value": value}


SUCCEED = {"type": "succeed"}
FAIL = {"type": "fail", "error": "Rejected"}


def only(findings: list[Finding], code: str, state: str | None) -> Finding:
    """The single finding with ``code``; it must name ``state``, be an error and carry a message."""
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, findings
    (finding,) = matching
    assert finding.state == state, finding
    assert finding.severity == "error"
    assert finding.message
    return finding
