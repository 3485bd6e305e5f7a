"""Approval timeouts and escalations, applied by the sweeper from what the database holds
(the due time and what to do then), so they survive worker restarts and Redis flushes."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from ..models import ApprovalRequest, ApprovalStatus, EventKind
from . import clock
from .approval_access import assign
from .approval_spec import ESCALATE
from .approvals import decide, spec_of
from .definition import definition_for_version
from .errors import ApprovalRefused
from .eventlog import EventLog
from .transitions import lock_run

BATCH = 200


def due_approvals(now: datetime) -> int:
    """Apply what each due request's definition says (an outcome, or escalation); returns how many."""
    due = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, due_at__lte=now).exclude(on_timeout="")
    return sum(expire(pk) for pk in due.values_list("pk", flat=True)[:BATCH])


def expire(request_id: int) -> bool:
    """One due request: escalate it, or decide it with its timeout outcome. Safe to repeat."""
    with transaction.atomic():
        run_id = ApprovalRequest.objects.filter(pk=request_id).values_list("run_id", flat=True).first()
        if run_id is None:
            return False
        run = lock_run(run_id)
        request = ApprovalRequest.objects.select_related("attempt").get(pk=request_id)
        now = clock.now()
        if request.status != ApprovalStatus.PENDING or not request.on_timeout or request.due_at is None \
                or request.due_at > now:
            return False
        if request.on_timeout != ESCALATE:
            outcome, waited = request.on_timeout, (now - request.created_at).total_seconds()
            try:
                decide(request.pk, None, outcome, f"no decision after {waited:.0f} s: {outcome} by timeout",
                       timed_out=True)
            except ApprovalRefused:
                return False
            return True
        state = definition_for_version(run.version).state(request.state_name)
        escalation = spec_of(state, request.gate, request.edge).escalation
        assert escalation is not None  # the validator requires it with on_timeout "escalate"
        assign(request, escalation.approvers)
        request.escalation_level += 1
        request.escalated_at = now
        request.due_at = now + timedelta(seconds=escalation.due_seconds) if escalation.due_seconds else None
        request.on_timeout = escalation.on_timeout or ""
        request.save(update_fields=["escalation_level", "escalated_at", "due_at", "on_timeout"])
        log = EventLog(run)
        log.add(EventKind.APPROVAL_ESCALATED, request.attempt, request=request.pk,
                to=escalation.approvers.describe(), due_at=request.due_at.isoformat() if request.due_at else None)
        log.flush()
    return True
