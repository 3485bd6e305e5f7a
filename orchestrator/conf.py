"""Engine settings: one namespaced ``RATCHET`` dict, read lazily, unknown keys refused.

| key | default | meaning |
|---|---|---|
| LEASE_SECONDS | 10 | how long a claimed attempt stays ours without a lease renewal |
| SWEEP_INTERVAL_SECONDS | 2 | how often each worker runs the recovery sweeper |
| REDISPATCH_GRACE_SECONDS | 5 | a scheduled attempt with no RQ job this long is dispatched again |
| DEFAULT_STEP_TIMEOUT_SECONDS | 300 | step timeout when a state sets none |
| MAX_RESUMES_PER_STEP | 20 | lost attempts of one step before the step fails as lost |
| INLINE_CHAIN_LIMIT | 200 | steps a worker runs back to back for one run before going through RQ |
| FAST_CHECKPOINT | true | PostgreSQL: checkpoint a plain task-to-task step in one statement (fast_checkpoint.py) |
| FAST_CHECKPOINT_PREPARED | true | prepare that statement once per connection (off behind a pooler that cannot) |
| LEAN_JOBS | true | run attempt jobs without RQ's per-job registries and records (engine/worker.py says what is kept) |
| LOGIN_MAX_FAILURES | 5 | failed sign-ins for one account from one address before it must wait (accounts.py) |
| LOGIN_LOCK_SECONDS | 900 | how long those failures count, and how long the wait lasts |
| COMPENSATION_DEADLINE_SECONDS | 3600 | how long a failing run's saga may take; then what is left is marked |
| COMPENSATION_MAX_ATTEMPTS | 5 | tries of one compensation (backoff from 1 s) before the run pauses for a person |
| WORKER_SILENT_SECONDS | 30 | a worker not seen for this long no longer counts as reading its queues |
| SINK_PATH | var/sink.sqlite3 | the demo delivery sink (outside the engine's database) |
| MODEL_PROVIDER | offline | provider of agent states that name none: `offline` or `openai` |
| OPENAI_BASE_URL | https://api.openai.com/v1 | any server speaking OpenAI's chat completions (vLLM, Ollama) |
| OPENAI_API_KEY | (empty) | sent as a bearer token when set |
| OPENAI_MODEL | gpt-4o-mini | model of agent states that name none |
| MODEL_TIMEOUT_SECONDS | 60 | how long one model call may take |
| MODEL_PRICES | offline: 0.15 / 0.60 | USD per 1M input / output tokens, for answers carrying no cost |
| DEFAULT_MAX_STEPS | none | step budget of a run whose definition sets none |
| DEFAULT_MAX_TOKENS | none | token budget default |
| DEFAULT_MAX_COST | none | cost budget default (USD) |
| DEFAULT_MAX_DEPTH | 8 | delegation depth (handoffs, sub-workflow nesting) default |
| DEFAULT_MAX_PARALLEL_AGENTS | none | branches that may run at once in a run, by default |
| DEFAULT_RUN_TIMEOUT_SECONDS | none | a run's deadline when its definition sets none |
| RATE_LIMITS | demo.partner_api: 5/s | shared limits per handler (ratelimits.py): `{"x.y": {"rate": 5, "burst": 9}}` |
| CIRCUIT_BREAKERS | demo.partner_api | per handler (breakers.py): `{"x.y": {"failures": 5, "open_seconds": 30}}` |
| BULK_CHUNK_SIZE | 50 | runs a bulk action handles per transaction (its progress moves by this much) |
| BULK_STALL_SECONDS | 30 | a bulk action with no progress this long is handed to another worker by the sweeper |
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    "LEASE_SECONDS": 10.0,
    "SWEEP_INTERVAL_SECONDS": 2.0,
    "REDISPATCH_GRACE_SECONDS": 5.0,
    "DEFAULT_STEP_TIMEOUT_SECONDS": 300.0,
    "MAX_RESUMES_PER_STEP": 20,
    "INLINE_CHAIN_LIMIT": 200,
    "FAST_CHECKPOINT": True,
    "FAST_CHECKPOINT_PREPARED": True,
    "LEAN_JOBS": True,
    "COMPENSATION_DEADLINE_SECONDS": 3600.0,
    "COMPENSATION_MAX_ATTEMPTS": 5,
    "WORKER_SILENT_SECONDS": 30.0,
    "SINK_PATH": None,
    "MODEL_PROVIDER": "offline",
    "OPENAI_BASE_URL": "https://api.openai.com/v1",
    "OPENAI_API_KEY": "",
    "OPENAI_MODEL": "gpt-4o-mini",
    "MODEL_TIMEOUT_SECONDS": 60.0,
    "MODEL_PRICES": {"offline": [0.15, 0.60]},
    "DEFAULT_MAX_STEPS": None,
    "DEFAULT_MAX_TOKENS": None,
    "DEFAULT_MAX_COST": None,
    "DEFAULT_MAX_DEPTH": 8,
    "DEFAULT_MAX_PARALLEL_AGENTS": None,
    "DEFAULT_RUN_TIMEOUT_SECONDS": None,
    # The demo partner API allows five calls a second (the partner_lookup demo shows it).
    "RATE_LIMITS": {"demo.partner_api": {"rate": 5, "burst": 5}},
    # The demo partner API's breaker opens after 5 failures in a row, for 30 s.
    "CIRCUIT_BREAKERS": {"demo.partner_api": {"failures": 5, "open_seconds": 30}},
    "BULK_CHUNK_SIZE": 50,
    "BULK_STALL_SECONDS": 30.0,
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_LOCK_SECONDS": 900.0,
}
# Settings whose default is None still have a type (environment variables arrive as strings).
_TYPES: dict[str, type] = {
    "DEFAULT_MAX_STEPS": int, "DEFAULT_MAX_TOKENS": int, "DEFAULT_MAX_COST": float,
    "DEFAULT_MAX_PARALLEL_AGENTS": int, "DEFAULT_RUN_TIMEOUT_SECONDS": float,
}


# The RATCHET dict whose keys were checked last, and its values as converted since: a step reads
# a dozen settings, and a changed setting is a new dict (override_settings, a new process).
_checked: list[Any] = [None]
_converted: dict[str, Any] = {}


def ratchet_settings() -> dict[str, Any]:
    """The project's RATCHET dict itself: what is derived from the settings may be kept while
    this is the same object (a changed setting is a new dict)."""
    return getattr(settings, "RATCHET", {})


def ratchet_setting(name: str) -> Any:
    """Return one engine setting; the user's value converted to the default's type."""
    overrides = ratchet_settings()
    if overrides is not _checked[0]:
        unknown = set(overrides) - set(DEFAULTS)
        if unknown:
            raise ImproperlyConfigured(f"Unknown RATCHET setting(s): {', '.join(sorted(unknown))}")
        _converted.clear()
        _checked[0] = overrides
    if name in _converted:
        return _converted[name]
    if name not in DEFAULTS:
        raise KeyError(name)
    default = DEFAULTS[name]
    value = overrides.get(name, default)
    if name == "SINK_PATH" and value is None:
        return str(settings.VAR_DIR / "sink.sqlite3")  # follows VAR_DIR: not kept
    value = _converted_value(name, default, value)
    _converted[name] = value
    return value


def _converted_value(name: str, default: Any, value: Any) -> Any:
    kind = _TYPES.get(name) or (type(default) if default is not None else None)
    if kind is dict and isinstance(value, str):
        value = json.loads(value)
    elif kind is bool and isinstance(value, str):
        value = _boolean(name, value)
    elif kind is not None and value is not None and not isinstance(value, kind):
        value = kind(value)
    return value


_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False,
          "": False}


def _boolean(name: str, value: str) -> bool:
    """An environment variable's word: ``RATCHET_FAST_CHECKPOINT=false`` is off, not a truthy string."""
    try:
        return _WORDS[value.strip().lower()]
    except KeyError:
        raise ImproperlyConfigured(f"RATCHET setting {name} must be true or false, not {value!r}") from None
