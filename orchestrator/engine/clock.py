"""The engine's clock: the database's, so that workers on machines whose clocks disagree
still agree on leases, deadlines, timers and sweeps.

Asking the database for the time at every step would cost a statement on the hot path, so
each process measures how far its own clock is from the database's (one ``SELECT
clock_timestamp()``, halfway through the round trip) and adds that offset. The sweeper thread
measures again at every sweep; other processes measure when the last measurement is older
than ``REFRESH_SECONDS``. SQLite has no server: its clock is this machine's, offset zero.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

REFRESH_SECONDS = 30.0
# Set when this process commits a timer (a backoff, a wait, a throttled step's slot): the
# sweeper thread, asleep until the next timer it knew of, looks again, so the new one fires on
# time instead of up to a sweep interval late.
timers_changed = threading.Event()

_lock = threading.Lock()
_offset = timedelta(0)
_measured_at: float | None = None


def now() -> datetime:
    """The current time by the database's clock (aware, UTC)."""
    if _measured_at is None or time.monotonic() - _measured_at > REFRESH_SECONDS:
        sync()
    return timezone.now() + _offset


def offset() -> timedelta:
    """How far the database's clock is ahead of this process's (negative: behind)."""
    return _offset


def sync() -> timedelta:
    """Measure the offset to the database's clock now; returns it."""
    global _offset, _measured_at
    if connection.vendor != "postgresql":
        measured = timedelta(0)
    else:
        before = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            database_time = cursor.fetchone()[0]
        after = timezone.now()
        measured = database_time - (before + (after - before) / 2)
    with _lock:
        _offset = measured
        _measured_at = time.monotonic()
    return measured


def forget() -> None:
    """Measure again at the next ``now()`` (after a fork, or in tests)."""
    global _measured_at
    _measured_at = None
