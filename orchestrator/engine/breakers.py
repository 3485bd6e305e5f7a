"""Circuit breakers per handler, shared by every worker through Redis.

After ``failures`` consecutive failed calls of a handler its breaker opens for ``open_seconds``:
steps that would call it are not called, but put back until the breaker may close (no worker
held, not a failure, not a retry; a ``circuit_open`` event). Then one step goes as a probe
(half-open): its success closes the breaker, its failure opens it again. Opening and closing
are events of the run whose step caused them. The state is one Redis hash per handler, read
and changed by Lua scripts (atomic, Redis's clock), so every worker sees the same breaker.

If Redis does not answer, breakers let every call through (logged). A flush closes them.

Settings: ``RATCHET_CIRCUIT_BREAKERS`` maps a handler name to
``{"failures": n, "open_seconds": s}``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from redis.commands.core import Script

from .dispatch import redis_connection
from .handler_settings import per_handler

logger = logging.getLogger("ratchet.breakers")

KEY = "ratchet:breaker:{}"
PROBE_WAIT_US = 1_000_000  # others wait this long, again and again, while a probe is out

# KEYS: the breaker. ARGV: attempt id, open microseconds. Returns microseconds to wait (0: go).
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return 0 end
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'until'))
  if now < reopen then return math.ceil(reopen - now) end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', ARGV[1], 'probe_at', string.format('%.0f', now))
  return 0
end
if redis.call('HGET', KEYS[1], 'probe') == ARGV[1] then return 0 end
if now - tonumber(redis.call('HGET', KEYS[1], 'probe_at')) > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'probe', ARGV[1], 'probe_at', string.format('%.0f', now))
  return 0
end
return {PROBE_WAIT_US}
""".replace("{PROBE_WAIT_US}", str(PROBE_WAIT_US))

# KEYS: the breaker. ARGV: 1 for a success / 0 for a failure, threshold, open microseconds.
# Returns 'opened', 'closed' or ''.
RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'failures', 0)
  if state ~= 'closed' then
    redis.call('HSET', KEYS[1], 'state', 'closed')
    redis.call('HDEL', KEYS[1], 'probe', 'probe_at', 'until')
    return 'closed'
  end
  return ''
end
if state == 'open' then return '' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', string.format('%.0f', now + tonumber(ARGV[3])))
  redis.call('HDEL', KEYS[1], 'probe', 'probe_at')
  return 'opened'
end
return ''
"""


@dataclass(frozen=True)
class Breaker:
    failures: int  # consecutive failed calls that open it
    open_seconds: float

    @property
    def open_us(self) -> int:
        return math.ceil(self.open_seconds * 1_000_000)

    def describe(self) -> str:
        return f"opens after {self.failures} failures in a row, for {self.open_seconds:g} s"


@dataclass(frozen=True)
class BreakerState:
    handler: str
    breaker: Breaker
    state: str  # closed, open or half_open
    failures: int
    reopens_in: float  # seconds until an open breaker lets a probe through


def _breaker(name: str, spec: Mapping[str, Any]) -> Breaker:
    failures, seconds = spec.get("failures"), spec.get("open_seconds")
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
        raise ImproperlyConfigured(f"circuit breaker of {name!r}: 'failures' must be a whole number of at least 1")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds < math.inf:
        raise ImproperlyConfigured(f"circuit breaker of {name!r}: 'open_seconds' must be a positive number")
    return Breaker(failures, float(seconds))


def configured() -> dict[str, Breaker]:
    """The breakers of ``RATCHET_CIRCUIT_BREAKERS``, checked."""
    return per_handler("CIRCUIT_BREAKERS", _breaker)


def breaker_for(state: Any) -> tuple[str, Breaker] | None:
    if state is None or getattr(state, "type", None) != "task":
        return None
    breaker = configured().get(state.handler)
    return (state.handler, breaker) if breaker else None


@cache
def _scripts(url: str) -> tuple[Script, Script]:
    connection = redis_connection()
    return connection.register_script(ADMIT), connection.register_script(RECORD)


def admit(name: str, breaker: Breaker, attempt_id: int) -> float:
    """Seconds the step must wait for the breaker (0.0: call now; it may be the probe)."""
    from django.conf import settings

    try:
        waited = _scripts(settings.REDIS_URL)[0](keys=[KEY.format(name)], args=[attempt_id, breaker.open_us])
    except Exception:
        logger.warning("circuit breaker of %s not consulted: Redis did not answer", name, exc_info=True)
        return 0.0
    return int(waited) / 1_000_000


def record(name: str, breaker: Breaker, succeeded: bool) -> str:
    """Count a call's outcome; returns "opened" or "closed" when the breaker changed, else ""."""
    from django.conf import settings

    try:
        changed = _scripts(settings.REDIS_URL)[1](keys=[KEY.format(name)],
                                                  args=[1 if succeeded else 0, breaker.failures, breaker.open_us])
    except Exception:
        logger.warning("outcome of %s not counted by its circuit breaker: Redis did not answer", name, exc_info=True)
        return ""
    return changed.decode() if isinstance(changed, bytes) else str(changed or "")


def note_outcome(attempt: Any, state: Any, succeeded: bool) -> None:
    """After a guarded handler's call: count it (see note_call)."""
    note_call(attempt, breaker_for(state), succeeded)


def note_call(attempt: Any, guarded: tuple[str, Breaker] | None, succeeded: bool) -> None:
    """After a call of a guarded handler or tool: count it, and record the breaker opening or
    closing as an event of this run (its own short transaction)."""
    if guarded is None:
        return
    changed = record(*guarded, succeeded)
    if changed:
        from django.db import transaction

        from ..models import EventKind
        from .eventlog import EventLog

        kind = EventKind.BREAKER_OPENED if changed == "opened" else EventKind.BREAKER_CLOSED
        try:
            with transaction.atomic():
                log = EventLog(attempt.run_id)
                log.add(kind, attempt, handler=guarded[0], breaker=guarded[1].describe())
                log.flush()
        except Exception:  # the breaker changed all the same; only its event is missing
            logger.warning("circuit breaker of %s %s; its event was not written", guarded[0], changed, exc_info=True)


def states() -> list[BreakerState]:
    """Every configured breaker as Redis holds it now (closed when Redis does not answer)."""
    connection = redis_connection()
    found = []
    for name, breaker in sorted(configured().items()):
        try:
            fields = {k.decode(): v.decode() for k, v in connection.hgetall(KEY.format(name)).items()}
            seconds, micros = connection.time()
        except Exception:
            fields, seconds, micros = {}, 0, 0
        now = seconds * 1_000_000 + micros
        reopens = max(float(fields.get("until", now)) - now, 0.0) / 1_000_000 if fields.get("state") == "open" else 0.0
        state = fields.get("state", "closed")
        found.append(BreakerState(name, breaker, state, int(fields.get("failures", 0)), reopens))
    return found


def reset(name: str, user: Any = None) -> None:
    """Close a breaker by hand (an operator, once the tool is back)."""
    from ..models import AuditAction
    from . import audit

    redis_connection().delete(KEY.format(name))
    audit.record(AuditAction.RESET_BREAKER, user, target=("breaker", name), detail={"handler": name})
