"""Settings that map handler names to a rule (rate limits, circuit breakers).

They are consulted each time a guarded step is scheduled or claimed, so each distinct value is
checked and turned into rules once, not on every call. A bad entry is a configuration error
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
    return _parsed(setting, json.dumps(raw, sort_keys=True, default=str), parse)


@lru_cache(maxsize=32)
def _parsed(setting: str, value: str, parse: Callable[[str, Mapping[str, Any]], Rule]) -> dict[str, Rule]:
    return {str(name): parse(str(name), spec if isinstance(spec, dict) else {})
            for name, spec in json.loads(value).items()}
