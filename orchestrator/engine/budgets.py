"""A run's budgets: what its definition declares, else the defaults in settings.

Read here, not from ``definition.budgets`` directly, so a default set by the operator
(``RATCHET_DEFAULT_MAX_DEPTH`` ...) applies to every definition that declares nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..conf import ratchet_setting
from ..models import Run
from .definition import Definition


@dataclass(frozen=True)
class Limits:
    max_steps: int | None
    max_tokens: int | None
    max_cost: float | None
    max_depth: int | None
    max_parallel_agents: int | None
    timeout_seconds: float | None


LENT = ("max_tokens", "max_cost", "max_depth")  # what a parent run lends its children


def limits(definition: Definition, run: Run | None = None) -> Limits:
    """The limits a run works under; a child run's are capped by what its parent lent it."""
    declared = definition.budgets
    caps = run.budget_caps if run is not None else {}

    def pick(value: object, setting: str, key: str = "") -> object:
        chosen = value if value is not None else ratchet_setting(setting)
        cap = caps.get(key)
        return chosen if cap is None else cap if chosen is None else min(chosen, cap)  # type: ignore[type-var]

    return Limits(
        max_steps=pick(declared.max_steps, "DEFAULT_MAX_STEPS"),  # type: ignore[arg-type]
        max_tokens=pick(declared.max_tokens, "DEFAULT_MAX_TOKENS", "max_tokens"),  # type: ignore[arg-type]
        max_cost=pick(declared.max_cost, "DEFAULT_MAX_COST", "max_cost"),  # type: ignore[arg-type]
        max_depth=pick(declared.max_depth, "DEFAULT_MAX_DEPTH", "max_depth"),  # type: ignore[arg-type]
        max_parallel_agents=pick(declared.max_parallel_agents, "DEFAULT_MAX_PARALLEL_AGENTS"),  # type: ignore[arg-type]
        timeout_seconds=pick(definition.timeout_seconds, "DEFAULT_RUN_TIMEOUT_SECONDS"),  # type: ignore[arg-type]
    )


def run_deadline(definition: Definition, start: datetime) -> datetime | None:
    """When a run started (or redriven) at ``start`` times out, if its budgets say so."""
    seconds = limits(definition).timeout_seconds
    return start + timedelta(seconds=seconds) if seconds else None


def lent_to_child(definition: Definition, run: Run) -> dict[str, float | int]:
    """What is left of a run's budgets, lent to a child run it starts (its usage comes back to
    the parent when it ends)."""
    mine = limits(definition, run)
    caps: dict[str, float | int] = {}
    if mine.max_tokens is not None:
        caps["max_tokens"] = max(mine.max_tokens - run.tokens_used, 0)
    if mine.max_cost is not None:
        caps["max_cost"] = max(mine.max_cost - float(run.cost_used), 0.0)
    if mine.max_depth is not None:
        caps["max_depth"] = mine.max_depth
    return caps
