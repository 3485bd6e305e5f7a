"""Rate limits per handler, shared by every worker through Redis.

A limit is a sustained rate (calls per second) and a burst (calls allowed at once). The
algorithm is GCRA (the generic cell rate algorithm, a token bucket without a refill timer) in
one Lua script: checking and counting a call is one atomic round trip, and every worker reads
the same clock (Redis's ``TIME``, not its own). It runs when a worker claims the step, just
before the handler is called, so what the limit counts is what the tool receives.

A step that does not conform is not refused: it is put back with a delay (``_throttle`` in
transitions.py), holds no worker while it waits, is neither a failure nor a retry, and leaves a
``throttled`` event. Each waiter is given its own wake-up time, one interval after the waiters
still to come back, so they return one by one instead of all at once; one that comes back and
still does not conform (a new step went first) waits only until the next call allowed.

If Redis is unreachable, limits are not enforced (logged): a limiter must not stop the engine.
A Redis flush forgets the state: limits start again from a full burst.

Why a script and not a library: the maintained Python limiters (``limits``) accept or refuse a
request, and a refused step would have to poll; spreading the waiters, and reading the clock
from Redis, are what this engine needs, and both fit in a short Lua script.

Settings: ``RATCHET_RATE_LIMITS`` maps a handler name to ``{"rate": per second, "burst": n}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from redis.commands.core import Script

from .dispatch import redis_connection
from .handler_settings import per_handler

logger = logging.getLogger("ratchet.ratelimits")

KEY = "ratchet:ratelimit:{}"
WAITERS = "ratchet:ratelimit:{}:waiters"

# KEYS: the limit's state (its theoretical arrival time, in microseconds) and its waiters (a
# sorted set: attempt id -> wake-up time). ARGV: microseconds between calls at the sustained
# rate, the burst's tolerance in microseconds, the attempt id. Returns microseconds to wait.
#
# A call is counted when it goes, so a waiter that comes back late never adds to a burst. A
# newcomer that must wait is placed after the waiters still to come back, one interval apart;
# a waiter that comes back and still does not conform waits until the next call allowed.
# Waiters gone for a minute (their run cancelled) are forgotten.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - tolerance <= now then
  local ttl = math.ceil((tat + interval - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
  redis.call('ZREM', KEYS[2], ARGV[3])
  return 0
end
local wake = tat - tolerance
if not redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  wake = wake + interval * redis.call('ZCOUNT', KEYS[2], now, '+inf')
end
redis.call('ZADD', KEYS[2], string.format('%.0f', wake), ARGV[3])
redis.call('PEXPIRE', KEYS[2], math.ceil((wake - now) / 1000) + 120000)
return math.ceil(wake - now)
"""


@dataclass(frozen=True)
class Limit:
    rate: float  # calls per second, sustained
    burst: int  # calls at once

    @property
    def interval_us(self) -> float:
        return 1_000_000 / self.rate

    def describe(self) -> str:
        return f"{self.rate:g}/s, burst {self.burst}"


def _limit(name: str, spec: Mapping[str, Any]) -> Limit:
    rate, burst = spec.get("rate"), spec.get("burst", 1)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not math.isfinite(rate) or rate <= 0:
        raise ImproperlyConfigured(f"rate limit of {name!r}: 'rate' must be a positive number of calls per second")
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise ImproperlyConfigured(f"rate limit of {name!r}: 'burst' must be a whole number of at least 1")
    return Limit(float(rate), burst)


def configured() -> dict[str, Limit]:
    """The limits of ``RATCHET_RATE_LIMITS``, checked (a bad entry is a configuration error)."""
    return per_handler("RATE_LIMITS", _limit)


def limit_for(state: Any) -> tuple[str, Limit] | None:
    """The limit that applies to a state's step (its handler's), if any."""
    if state is None or getattr(state, "type", None) != "task":
        return None
    limit = configured().get(state.handler)
    return (state.handler, limit) if limit else None


@cache
def _script(url: str) -> Script:
    return redis_connection().register_script(GCRA)


def acquire(name: str, limit: Limit, attempt_id: int) -> float:
    """Seconds the attempt must wait before calling ``name`` (0.0: now). Reserves its slot."""
    from django.conf import settings

    try:
        waited = _script(settings.REDIS_URL)(
            keys=[KEY.format(name), WAITERS.format(name)],
            args=[limit.interval_us, limit.interval_us * (limit.burst - 1), attempt_id],
        )
    except Exception:
        logger.warning("rate limit of %s not enforced: Redis did not answer", name, exc_info=True)
        return 0.0
    return int(waited) / 1_000_000


# A wait this short is slept in the worker (cheaper than putting the step back and dispatching
# it again). Waiters are woken this much early so that, with the dispatch's own delay, they
# arrive about when their call is allowed; never sooner than SPIN_SECONDS, so the job that put
# the step back has ended before the step is dispatched again (RQ reuses the job id).
SPIN_SECONDS = 0.05
LEAD_SECONDS = 0.02


def conform(name: str, limit: Limit, attempt_id: int) -> float:
    """Wait here for a call that is allowed within SPIN_SECONDS; otherwise return how long the
    step should be put back for (0.0: call now)."""
    for _ in range(4):
        wait = acquire(name, limit, attempt_id)
        if wait == 0.0:
            return 0.0
        if wait > SPIN_SECONDS:
            return max(wait - LEAD_SECONDS, SPIN_SECONDS)
        time.sleep(wait)
    return SPIN_SECONDS


def waiting(name: str) -> int:
    """Steps waiting for their turn under this limit now (0 when Redis does not answer)."""
    connection = redis_connection()
    try:
        seconds, micros = connection.time()
        return int(connection.zcount(WAITERS.format(name), seconds * 1_000_000 + micros - 60_000_000, "+inf"))
    except Exception:
        return 0


def backlog(name: str, limit: Limit) -> float:
    """Seconds of calls already reserved beyond the burst (0.0: a call would go now)."""
    connection = redis_connection()
    try:
        seconds, micros = connection.time()
        tat = connection.get(KEY.format(name))
    except Exception:
        return 0.0
    if tat is None:
        return 0.0
    now = seconds * 1_000_000 + micros
    return max(float(tat) - limit.interval_us * (limit.burst - 1) - now, 0.0) / 1_000_000
