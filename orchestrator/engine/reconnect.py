"""Reconnect-and-retry for the engine's own database work in a worker.

A dropped connection (PostgreSQL restarted, a network blip, a terminated backend) must not
fail a run: every engine write is a compare-and-set or otherwise safe to repeat after an
unknown outcome, so it is retried on a fresh connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger("ratchet.reconnect")
T = TypeVar("T")
PAUSES_SECONDS = (0.2, 0.5, 1, 2, 4, 8, 15)


def with_db_retry(fn: Callable[[], T]) -> T:
    for pause in (*PAUSES_SECONDS, None):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            if pause is None or connection.in_atomic_block:
                raise  # out of patience, or inside an outer transaction that is lost anyway
            logger.warning("database unavailable; reconnecting in %ss", pause, exc_info=True)
            connection.close()
            time.sleep(pause)
    raise AssertionError("unreachable")
