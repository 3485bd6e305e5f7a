"""A run's budgets: what its definition declares, else the defaults in settings.

Read here, not from ``definition.budgets`` directly, so a default set by the operator
(``RATCHET_DEFAULT_MAX_DEPTH`` ...) applies to every definition that declares nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..conf import ratchet_setting
from .definition import Definition


@dataclass(frozen=True)
class Limits:
    max_steps: int | None
    max_tokens: int | None
    max_cost: float | None
    max_depth: int | None
    max_parallel_agents: int | None
    timeout_seconds: float | None


def limits(definition: Definition) -> Limits:
    declared = definition.budgets

    def pick(value: object, setting: str) -> object:
        return value if value is not None else ratchet_setting(setting)

    return Limits(
        max_steps=pick(declared.max_steps, "DEFAULT_MAX_STEPS"),  # type: ignore[arg-type]
        max_tokens=pick(declared.max_tokens, "DEFAULT_MAX_TOKENS"),  # type: ignore[arg-type]
        max_cost=pick(declared.max_cost, "DEFAULT_MAX_COST"),  # type: ignore[arg-type]
        max_depth=pick(declared.max_depth, "DEFAULT_MAX_DEPTH"),  # type: ignore[arg-type]
        max_parallel_agents=pick(declared.max_parallel_agents, "DEFAULT_MAX_PARALLEL_AGENTS"),  # type: ignore[arg-type]
        timeout_seconds=pick(definition.timeout_seconds, "DEFAULT_RUN_TIMEOUT_SECONDS"),  # type: ignore[arg-type]
    )


def run_deadline(definition: Definition, start: datetime) -> datetime | None:
    """When a run started (or redriven) at ``start`` times out, if its budgets say so."""
    seconds = limits(definition).timeout_seconds
    return start + timedelta(seconds=seconds) if seconds else None
