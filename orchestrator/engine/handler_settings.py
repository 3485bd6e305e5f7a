"""Settings that map handler names to a rule (rate limits, circuit breakers).

They are consulted each time a step is scheduled or claimed, so each distinct value is checked
and turned into rules once, and a call that reads the same settings object as the last one
returns its rules at once (no serialising on the hot path). A bad entry is a configuration error
that names the handler and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

from ..conf import ratchet_setting

Rule = TypeVar("Rule")


def per_handler(setting: str, parse: Callable[[str, Mapping[str, Any]], Rule]) -> dict[str, Rule]:
    """``RATCHET_<setting>`` as ``{handler: rule}``; ``parse(handler, spec)`` checks one entry."""
    raw = ratchet_setting(setting) or {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"RATCHET_{setting} maps handler names to their rules: "
                                   "{\"handler.name\": {...}}")
    seen = _LAST.get(setting)
    if seen is not None and seen[0] is raw and seen[1] is parse:
        return seen[2]  # the same settings object as last time: nothing to serialise again
    rules = _parsed(setting, json.dumps(raw, sort_keys=True, default=str), parse)
    _LAST[setting] = (raw, parse, rules)
    return rules


# setting -> (the settings object last read, its parser, its rules): settings are replaced, not
# changed in place (override_settings and a new RATCHET dict make a new object).
_LAST: dict[str, tuple[Any, Any, Any]] = {}


@lru_cache(maxsize=32)
def _parsed(setting: str, value: str, parse: Callable[[str, Mapping[str, Any]], Rule]) -> dict[str, Rule]:
    return {str(name): parse(str(name), spec if isinstance(spec, dict) else {})
            for name, spec in json.loads(value).items()}
