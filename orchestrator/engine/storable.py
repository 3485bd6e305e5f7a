"""What a checkpoint can store: JSON that both SQLite and PostgreSQL's jsonb accept.

PostgreSQL refuses NaN, infinity and the NUL character that SQLite's JSON takes, and a value
that is not JSON at all cannot be stored anywhere. Checking before the checkpoint turns the
database's refusal (which would leave the attempt running until its lease lapsed, and the
handler run again) into a clear error naming the offending value's path.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import NotSerializable

_SCALARS = (str, int, float, bool, type(None))


def problem(value: Any, path: str = "$") -> str | None:
    """The first reason ``value`` cannot be stored, naming its path; None if it can."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return f"{where} holds a NUL character (\\u0000), which PostgreSQL cannot store"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where} is {item}, which JSON cannot hold"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{where} has a key {key!r} that is not a string"
                if "\x00" in key:
                    return f"{where} has a key with a NUL character (\\u0000)"
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        elif not isinstance(item, _SCALARS):
            return f"{where} is a {type(item).__name__}, which is not JSON"
    return None


def ensure_storable(value: Any, what: str) -> None:
    """Raise NotSerializable naming the path of the first value a checkpoint cannot store."""
    reason = problem(value)
    if reason is not None:
        raise NotSerializable(f"{what} cannot be stored: {reason}")


def storable_or_repr(value: Any) -> Any:
    """``value`` itself if it can be stored, else a stand-in that records what it was."""
    return value if problem(value) is None else {"not_storable": repr(value)[:1000].replace("\x00", "\\x00")}
