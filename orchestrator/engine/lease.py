"""The lease keeper: renews the lease of the attempt a worker is running, from a thread.

The lease says "this worker process is alive". A SIGKILLed worker stops renewing, its lease
expires, and the sweeper resumes the step elsewhere. Hung handlers are a different matter:
step timeouts and heartbeat timeouts catch those.

One keeper thread (with its own database connection, closed while no step runs) serves the
whole worker process; the executor points it at the claim it is running. A new claim already
carries a full lease, so pointing it there writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import connection

from ..conf import ratchet_setting
from ..models import AttemptStatus, StepAttempt
from . import clock
from .claims import Claim

logger = logging.getLogger("ratchet.lease")


class LeaseKeeper:
    def __init__(self) -> None:
        self._claim: Claim | None = None
        self._lost = threading.Event()
        self._since = 0.0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="ratchet-lease", daemon=True)
        self._thread.start()

    def hold(self, claim: Claim | None) -> threading.Event:
        """Keep renewing this claim's lease (None: hold nothing). Returns the claim's "lost"
        flag, set when a renewal finds the attempt no longer this worker's."""
        with self._changed:
            self._claim = claim
            self._lost = threading.Event()
            self._since = time.monotonic()
            self._changed.notify()
            return self._lost

    def _loop(self) -> None:
        while True:
            period = ratchet_setting("LEASE_SECONDS") / 3
            with self._changed:
                while self._claim is None:
                    # Idle: hand the connection back rather than hold it between steps (a worker
                    # would keep it forever, and a test database could not be dropped).
                    self._close_connection()
                    self._changed.wait()
                claim, lost, since = self._claim, self._lost, self._since
                due = since + period
                if time.monotonic() < due:
                    # Woken early by a new claim (or none): wait out the rest of the period.
                    self._changed.wait(timeout=due - time.monotonic())
                    continue
                self._since = time.monotonic()
            self._renew(claim, lost, period * 3)

    @staticmethod
    def _close_connection() -> None:
        try:
            connection.close()
        except Exception:  # a broken connection is dropped anyway; the next renewal opens a new one
            logger.debug("closing the lease keeper's connection failed", exc_info=True)

    def _renew(self, claim: Claim, lost: threading.Event, lease: float) -> None:
        try:
            renewed = StepAttempt.objects.filter(
                pk=claim.attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token
            ).update(lease_expires_at=clock.now() + timedelta(seconds=lease))
        except Exception:
            logger.warning("lease renewal of attempt %s failed", claim.attempt.pk, exc_info=True)
            connection.close()
            return
        if not renewed:
            lost.set()


_keeper: LeaseKeeper | None = None
_keeper_lock = threading.Lock()


def lease_keeper() -> LeaseKeeper:
    """This process's keeper, started on first use (after a fork too: threads do not survive it)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None or not _keeper._thread.is_alive():
            _keeper = LeaseKeeper()
        return _keeper
