"""The lease keeper: renews the lease of the attempt a worker is running, from a thread.

The lease says "this worker process is alive". A SIGKILLed worker stops renewing, its lease
expires, and the sweeper resumes the step elsewhere. Hung handlers are a different matter:
step timeouts and heartbeat timeouts catch those.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from ..conf import ratchet_setting
from ..models import AttemptStatus, StepAttempt
from .claims import Claim

logger = logging.getLogger("ratchet.lease")


class LeaseKeeper:
    def __init__(self) -> None:
        self.lost = threading.Event()
        self._claim: Claim | None = None
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="ratchet-lease", daemon=True)
        self._thread.start()

    def hold(self, claim: Claim | None) -> None:
        """Keep renewing this claim's lease (None: hold nothing)."""
        with self._wake:
            self._claim = claim
            self.lost = threading.Event()
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while True:
                lease = ratchet_setting("LEASE_SECONDS")
                with self._wake:
                    self._wake.wait(timeout=lease / 3)
                    if self._stopped:
                        return
                    claim, lost = self._claim, self.lost
                if claim is not None:
                    self._renew(claim, lost, lease)
        finally:
            connection.close()

    def _renew(self, claim: Claim, lost: threading.Event, lease: float) -> None:
        try:
            renewed = StepAttempt.objects.filter(
                pk=claim.attempt.pk, status=AttemptStatus.RUNNING, claim_token=claim.token
            ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease))
        except Exception:
            logger.warning("lease renewal of attempt %s failed", claim.attempt.pk, exc_info=True)
            connection.close()
            return
        if not renewed:
            lost.set()
