"""Rate limits and circuit breakers on the tools an agent calls, keyed by tool name in the same
settings as handlers' (RATCHET_RATE_LIMITS, RATCHET_CIRCUIT_BREAKERS).

An agent's visit that runs tools is known before it starts: the previous visit's answer
listed the calls. So the visit is checked where a task's handler is, when it is claimed: a
call over its tool's limit, or to a tool whose breaker is open, puts the whole visit back with
a delay (no worker held, not a failure, not a retry; the model's answer is replayed, not paid
again). Each call then counts toward its tool's breaker.
"""

from __future__ import annotations

from typing import Any

from .breakers import Breaker
from .breakers import configured as configured_breakers
from .lines import view
from .ratelimits import Limit
from .ratelimits import configured as configured_limits


def has_guarded_tools(state: Any) -> bool:
    """Does any tool of this agent state have a rate limit or a circuit breaker?"""
    if state is None or getattr(state, "type", None) != "agent" or not state.tools:
        return False
    limits, breakers = configured_limits(), configured_breakers()
    return any(name in limits or name in breakers for name in state.tools)


def calls_due(attempt: Any, state: Any) -> list[str]:
    """The tool names this visit is about to call, one per call, in order ([] for a visit that
    asks the model first, or an agent without guarded tools)."""
    if not has_guarded_tools(state):
        return []
    previous = view(attempt.run, attempt.line).get(state.context_key)
    if not isinstance(previous, dict):
        return []
    return [call.get("name") for call in previous.get("tool_calls") or [] if call.get("name") in state.tools]


def breakers_of(names: list[str]) -> list[tuple[str, Breaker]]:
    breakers = configured_breakers()
    return [(name, breakers[name]) for name in dict.fromkeys(names) if name in breakers]


def limits_of(names: list[str]) -> list[tuple[str, Limit]]:
    """One entry per call: two calls of a limited tool take two of its slots."""
    limits = configured_limits()
    return [(name, limits[name]) for name in names if name in limits]


def breaker_of_tool(name: str) -> tuple[str, Breaker] | None:
    breaker = configured_breakers().get(name)
    return (name, breaker) if breaker else None
