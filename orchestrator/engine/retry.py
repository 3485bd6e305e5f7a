"""Retry policy: error matching, exponential backoff with jitter, a maximum of attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


def error_matches(patterns: list[str], error: dict[str, Any]) -> bool:
    """True when any pattern names the error's type or one of its base types, or is '*'."""
    names = set(error.get("types") or [error.get("type")])
    return any(p == "*" or p in names for p in patterns)


@dataclass(frozen=True)
class RetryRule:
    errors: tuple[str, ...] = ("*",)
    max_attempts: int = 3
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    max_interval_seconds: float = 300.0
    jitter: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryRule:
        return cls(
            errors=tuple(data.get("errors", ["*"])),
            max_attempts=int(data.get("max_attempts", 3)),
            interval_seconds=float(data.get("interval_seconds", 1.0)),
            backoff_rate=float(data.get("backoff_rate", 2.0)),
            max_interval_seconds=float(data.get("max_interval_seconds", 300.0)),
            jitter=bool(data.get("jitter", True)),
        )

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next try, after ``failed_attempts`` failures (>= 1).

        Exponential backoff capped at ``max_interval_seconds``; with jitter, "equal jitter":
        half the delay is fixed and half random, so retries spread out but never come early.
        """
        try:
            base = self.interval_seconds * self.backoff_rate ** max(failed_attempts - 1, 0)
        except OverflowError:  # a steep backoff over many attempts: past any cap
            base = self.max_interval_seconds if self.interval_seconds > 0 else 0.0
        base = min(base, self.max_interval_seconds)
        if not self.jitter:
            return base
        return base / 2 + (rng or random).uniform(0, base / 2)


def next_retry_delay(rules: tuple[RetryRule, ...], error: dict[str, Any], failed_attempts: int) -> float | None:
    """Delay before retrying, or None when no rule matches or the matching rule is used up.

    The first rule whose errors match decides, as in Step Functions.
    """
    for rule in rules:
        if error_matches(list(rule.errors), error):
            if failed_attempts >= rule.max_attempts:
                return None
            return rule.delay(failed_attempts)
    return None
