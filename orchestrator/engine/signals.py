"""Signals the engine sends after a transition commits; the pages subscribe to them.

    run_changed(run_id, kinds)            every committed transition of a run
    attempt_changed(run_id, attempt_ids)  attempts whose status or progress changed
    effect_changed(run_id, keys)          effects of the ledger that changed
    swept(now)                            a recovery sweep ended (other apps resume their own work)

Sent from ``EventLog.flush``: every state change appends its events there, so no change
escapes them. Nothing is scheduled when no receiver is connected (the hot path pays nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

run_changed = Signal()
attempt_changed = Signal()
effect_changed = Signal()
swept = Signal()


def send_on_commit(run_id: Any, events: Iterable[Any]) -> None:
    if not (run_changed.has_listeners() or attempt_changed.has_listeners() or effect_changed.has_listeners()):
        return
    events = list(events)
    kinds = sorted({event.kind for event in events})
    attempt_ids = sorted({event.attempt_id for event in events if event.attempt_id})
    keys = sorted({event.data["key"] for event in events
                   if event.kind.startswith(("effect_", "compensation_")) and "key" in event.data})

    def send() -> None:
        run_changed.send(sender="ratchet", run_id=run_id, kinds=kinds)
        if attempt_ids:
            attempt_changed.send(sender="ratchet", run_id=run_id, attempt_ids=attempt_ids)
        if keys:
            effect_changed.send(sender="ratchet", run_id=run_id, keys=keys)

    transaction.on_commit(send)
