"""Manual transitions: a line of execution waits for a person's decision.

- An ``approval`` state, or a gate on a state's outgoing transition (``requires_approval``),
  creates a waiting attempt (no worker, no lease) and an ApprovalRequest, in the transaction
  that reached it. On the main line the run becomes ``waiting``; in a branch only that branch
  waits and its siblings go on.
- ``decide`` is the one way a request is decided (people, the API, the timeout): it locks the
  run's row first, so of two people deciding at once one wins and the other is told who
  decided and when. Approve goes where the state or gate leads, reject to ``reject`` (or the
  line fails as rejected), a labelled outcome to its state; edited data replaces the context
  path the definition lets reviewers edit.
- ``decide_ahead`` keeps a decision for an approval the run has not reached yet; it is
  applied when the run gets there (the first visit after it), or refused now with the reason.
- Timeouts and escalations are the sweeper's (approval_timers.py): the database holds them.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from django.db import transaction

from ..models import (
    ApprovalRequest,
    ApprovalStatus,
    AttemptKind,
    AttemptStatus,
    AuditAction,
    EventKind,
    FailureMode,
    Line,
    Run,
    RunStatus,
    StepAttempt,
)
from . import audit, clock
from .approval_access import FOUR_EYES, assign, refusal, request_refusal
from .approval_spec import APPROVE, REJECT, ApprovalSpec
from .claims import Claim
from .contracts import check_output
from .definition import Definition, State, definition_for_version
from .errors import ApprovalRefused, ContractViolation, engine_error
from .eventlog import EventLog
from .lines import is_live, store, view
from .runstate import save_run
from .scheduling import end_line, enter_state, fail_line
from .storable import ensure_storable
from .transitions import lock_run, wait_on

NO_EDIT = object()
CLAIM_STALE_SECONDS = 30 * 60


def spec_of(state: State, gate: bool, edge: str = "") -> ApprovalSpec:
    spec = state.edge_gate(edge) if gate else state.approval
    assert spec is not None, f"state '{state.name}' has no {'gate' if gate else 'approval'} {edge}"
    return spec


def request_approval(run: Run, definition: Definition, state: State, log: EventLog, *, line: Line | None,
                     gate: bool, leads_to: str = "", edge: str = "") -> StepAttempt:
    """The line reached an approval state (or passes a gate: the state's own transition, or
    ``edge`` "choice:<i>" / "catch:<i>"): it waits for a decision."""
    now = clock.now()
    attempt = StepAttempt.objects.create(
        run=run, kind=AttemptKind.GATE if gate else AttemptKind.STEP, state_name=state.name,
        sequence=run.steps_used, queue=state.queue, status=AttemptStatus.WAITING, scheduled_at=now,
        branch_path=line.path if line is not None else "", line=line)
    open_request(run, definition, state, attempt, log, gate=gate, leads_to=leads_to, edge=edge)
    return attempt


def open_request(run: Run, definition: Definition, state: State, attempt: StepAttempt, log: EventLog, *,
                 gate: bool, leads_to: str, edge: str = "") -> ApprovalRequest:
    """The request of a waiting ``attempt``; a decision kept ahead for it is applied at once."""
    spec, line, now = spec_of(state, gate, edge), attempt.line, clock.now()
    seen = view(run, line)
    shown = spec.show or ((state.context_key, "input") if gate else tuple(seen))
    proposed = {key: seen[key] for key in shown if key in seen}
    StepAttempt.objects.filter(pk=attempt.pk).update(input=proposed)
    fields = {
        "attempt": attempt, "branch_path": attempt.branch_path, "gate": gate, "leads_to": leads_to, "edge": edge,
        "title": title_of(state, spec, gate, leads_to), "outcomes": _outcomes(state, spec, gate, leads_to),
        "proposed": proposed, "edit_key": _edit_key(state, spec), "four_eyes": spec.four_eyes,
        "requested_by_id": run.started_by_id,
    }
    ahead = (ApprovalRequest.objects.filter(run=run, state_name=state.name, status=ApprovalStatus.DECIDED,
                                            attempt__isnull=True, edge=edge).order_by("id").first())
    if ahead is not None:
        for name, value in fields.items():
            setattr(ahead, name, value)
        ahead.save()
        log.add(EventKind.APPROVAL_REQUESTED, attempt, title=ahead.title, decided_ahead=True)
        _note_decision(ahead, log)
        apply_decision(run, definition, ahead, log)
        return ahead
    due = now + timedelta(seconds=spec.due_seconds) if spec.due_seconds else None
    request = ApprovalRequest.objects.create(run=run, state_name=state.name, created_at=now, due_at=due,
                                             on_timeout=spec.on_timeout or "", **fields)
    assign(request, spec.approvers)
    log.add(EventKind.APPROVAL_REQUESTED, attempt, title=request.title, request=request.pk,
            due_at=due.isoformat() if due else None, approvers=spec.approvers.describe(),
            **({"leads_to": leads_to or "(end)"} if gate else {}))
    if line is None and run.status == RunStatus.RUNNING:
        run.status = RunStatus.WAITING
    return request


def title_of(state: State, spec: ApprovalSpec, gate: bool, leads_to: str) -> str:
    if spec.title:
        return spec.title
    if gate:
        return f"{state.name} → {leads_to or 'end'}"
    return state.raw.get("title") or state.name


def _outcomes(state: State, spec: ApprovalSpec, gate: bool, leads_to: str) -> list[list[str]]:
    approve_to = leads_to if gate else (state.next or "")
    return [[APPROVE, approve_to], [REJECT, spec.reject_to or ""], *[[n, s] for n, s in spec.labelled]]


def _edit_key(state: State, spec: ApprovalSpec) -> str:
    if spec.editable is True:
        return state.context_key
    return spec.editable or ""


def reopen_claimed(claim: Claim) -> None:
    """A worker claimed an approval's attempt (a redrive or a reopened branch asks again):
    the attempt waits for a person once more, holding no worker."""
    attempt = claim.attempt
    with transaction.atomic():
        run = lock_run(attempt.run_id)
        log = EventLog(run)
        if not wait_on(claim, log):
            return
        gate = attempt.kind == AttemptKind.GATE
        leads_to, edge = (ApprovalRequest.objects.filter(run=run, state_name=attempt.state_name, gate=gate,
                                                         attempt__sequence=attempt.sequence)
                          .order_by("-id").values_list("leads_to", "edge").first() or ("", ""))
        open_request(run, claim.definition, claim.state, attempt, log, gate=gate, leads_to=leads_to, edge=edge)
        save_run(run)
        log.flush()


def decide(request_id: int, user: Any, outcome: str, comment: str = "", data: Any = NO_EDIT, *,
           timed_out: bool = False) -> ApprovalRequest:
    """Decide a pending request (``user`` None: the timeout decides). Raises ApprovalRefused
    with the reason: already decided (by whom, when), not allowed, an unknown outcome, an edit
    the definition does not allow or that breaks the state's output contract."""
    with transaction.atomic():
        run_id = ApprovalRequest.objects.filter(pk=request_id).values_list("run_id", flat=True).first()
        if run_id is None:
            raise ApprovalRefused(f"there is no approval request {request_id}")
        run = lock_run(run_id)
        request = ApprovalRequest.objects.select_related("attempt__line__fork", "decided_by").get(pk=request_id)
        if request.status != ApprovalStatus.PENDING:
            raise ApprovalRefused(already(request))
        if user is not None:
            reason = request_refusal(user, request)
            if reason is not None:
                raise ApprovalRefused(reason)
        definition = definition_for_version(run.version)
        _check_decision(definition.state(request.state_name), request.gate, request.outcome_names, outcome, data,
                        request.edit_key)
        log = EventLog(run, actor=user)
        _record(request, user, outcome, comment, data, timed_out=timed_out)
        _note_decision(request, log)
        apply_decision(run, definition, request, log)
        save_run(run)
        log.flush()
        _audit(run, request, user)
    return request


def _audit(run: Run, request: ApprovalRequest, user: Any, *, ahead: bool = False) -> None:
    action = {APPROVE: AuditAction.APPROVE, REJECT: AuditAction.REJECT}.get(request.outcome,
                                                                          AuditAction.DECIDE_APPROVAL)
    audit.record(action, user, run=run, target=request,
                 detail={"state": request.state_name, "outcome": request.outcome, "comment": request.comment,
                         "edited": request.edited, "ahead": ahead})


def already(request: ApprovalRequest) -> str:
    """Why a request cannot be decided again, naming who decided it and when."""
    if request.status == ApprovalStatus.CANCELLED:
        return f"this request was withdrawn at {_when(request.decided_at)}: its run or branch stopped"
    who = "the timeout" if request.timed_out else (request.decided_by.get_username() if request.decided_by
                                                   else "someone no longer known")
    return f"already decided: {request.outcome} by {who} at {_when(request.decided_at)}"


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "an unknown time"


def _check_decision(state: State, gate: bool, outcomes: list[str], outcome: str, data: Any, edit_key: str) -> None:
    if outcome not in outcomes:
        raise ApprovalRefused(f"'{outcome}' is not an outcome of this approval; use one of {', '.join(outcomes)}")
    if data is NO_EDIT:
        return
    if not edit_key:
        raise ApprovalRefused("this approval does not let reviewers edit data (its definition sets no 'editable')")
    ensure_storable(data, "the edited data")
    if gate and edit_key == state.context_key:
        try:
            check_output(state, data)
        except ContractViolation as violation:
            raise ApprovalRefused(f"the edited data breaks the step's output contract: {violation}") from None


def _record(request: ApprovalRequest, user: Any, outcome: str, comment: str, data: Any, *,
            timed_out: bool = False) -> None:
    request.status, request.outcome, request.comment = ApprovalStatus.DECIDED, outcome, comment.strip()[:5000]
    request.decided_by = user if getattr(user, "pk", None) else None
    request.decided_at, request.timed_out = clock.now(), timed_out
    request.edited = data is not NO_EDIT
    request.edited_data = data if data is not NO_EDIT else None
    request.save()


def _note_decision(request: ApprovalRequest, log: EventLog) -> None:
    log.add(EventKind.APPROVAL_DECIDED, request.attempt, actor=request.decided_by, outcome=request.outcome,
            request=request.pk, comment=request.comment, edited=request.edited, timed_out=request.timed_out)


def apply_decision(run: Run, definition: Definition, request: ApprovalRequest, log: EventLog) -> None:
    """Move the line on from a decided request (inside the deciding transaction)."""
    attempt, now = request.attempt, clock.now()
    state = definition.state(request.state_name)
    line = attempt.line
    record = {"outcome": request.outcome, "decided_by": request.decided_by.get_username() if request.decided_by
              else None, "comment": request.comment, "timed_out": request.timed_out, "edited": request.edited}
    target = dict(request.outcomes).get(request.outcome, "")
    rejected = request.outcome == REJECT and not target
    error = engine_error("Rejected", f"'{request.title}' was rejected by {record['decided_by'] or 'the timeout'}"
                         + (f": {request.comment}" if request.comment else "")) if rejected else None
    StepAttempt.objects.filter(pk=attempt.pk).update(
        status=AttemptStatus.FAILED if rejected else AttemptStatus.SUCCEEDED, output=record, error=error,
        failure_mode=FailureMode.REJECTED if rejected else "", finished_at=now)
    ApprovalRequest.objects.filter(pk=request.pk).update(applied_at=now)
    if line is None and run.status == RunStatus.WAITING:
        run.status = RunStatus.RUNNING
        run.human_wait_seconds += max((now - request.created_at).total_seconds(), 0.0)
    if not is_live(run, line):
        return
    if request.edited:
        _store_edit(run, line, request.edit_key, request.edited_data)
    if not request.gate:
        store(run, line, state.context_key, record)
    if rejected:
        fail_line(run, definition, line, error, FailureMode.REJECTED, log, state_name=state.name)
    elif target:
        enter_state(run, definition, target, log, line=line)
    else:
        output = view(run, line).get(state.context_key) if request.gate else record
        end_line(run, definition, line, output, log, state_name=state.name)


def _store_edit(run: Run, line: Line | None, path: str, value: Any) -> None:
    key, *rest = path.split(".")
    if not rest:
        store(run, line, key, value)
        return
    top = copy.deepcopy(view(run, line).get(key))
    top = top if isinstance(top, dict) else {}
    inner = top
    for part in rest[:-1]:
        inner = inner.setdefault(part, {}) if isinstance(inner.get(part), dict) or part not in inner else {}
    inner[rest[-1]] = value
    store(run, line, key, top)


def decide_ahead(run_id: Any, state_name: str, user: Any, outcome: str, comment: str = "",
                 data: Any = NO_EDIT) -> ApprovalRequest:
    """A decision for an approval the run has not reached yet: kept, and applied when the run
    gets there (the next visit of that state, on whichever line reaches it first). A request
    already pending there is decided now; anything that could not apply is refused now."""
    with transaction.atomic():
        run = lock_run(run_id)
        pending = ApprovalRequest.objects.filter(run=run, state_name=state_name, status=ApprovalStatus.PENDING)
        first = pending.order_by("id").values_list("pk", flat=True).first()
        if first is not None:
            return decide(first, user, outcome, comment, data)
        if run.is_terminal:
            raise ApprovalRefused(f"the run has ended ({run.status}); a decision for '{state_name}' would never apply")
        definition = definition_for_version(run.version)
        state = definition.states.get(state_name)
        if state is None or (state.approval is None and state.gate is None):
            names = [s.name for s in definition.states.values() if s.approval is not None or s.gate is not None]
            raise ApprovalRefused(f"'{state_name}' is not an approval state or gate of {run.workflow.name} version "
                                  f"{run.version.number}; its approvals are: {', '.join(names) or 'none'}")
        kept = (ApprovalRequest.objects.filter(run=run, state_name=state_name, attempt__isnull=True)
                .select_related("decided_by").first())
        if kept is not None:
            raise ApprovalRefused(f"a decision for '{state_name}' is already kept for this run ({already(kept)})")
        gate = state.approval is None
        spec = spec_of(state, gate)
        approvers = spec.approvers
        reason = refusal(user, groups=approvers.groups, permissions=approvers.effective_permissions,
                         four_eyes=spec.four_eyes, requested_by_id=run.started_by_id)
        if reason is not None:
            raise ApprovalRefused(reason)
        _check_decision(state, gate, list(spec.outcome_names), outcome, data, _edit_key(state, spec))
        request = ApprovalRequest(run=run, state_name=state_name, gate=gate, created_at=clock.now(),
                                  title=title_of(state, spec, gate, ""), four_eyes=spec.four_eyes,
                                  requested_by_id=run.started_by_id, edit_key=_edit_key(state, spec))
        _record(request, user, outcome, comment, data)
        log = EventLog(run, actor=user)
        log.add(EventKind.APPROVAL_DECIDED_AHEAD, state_name=state_name, outcome=outcome, request=request.pk,
                comment=request.comment)
        log.flush()
        _audit(run, request, user, ahead=True)
    return request


def claim(request_id: int, user: Any, *, release: bool = False) -> ApprovalRequest:
    """Mark a pending request as being looked at by ``user`` (others see who), or release it.
    A claim does not stop others deciding; taking over another person's claim waits until it
    is half an hour old."""
    with transaction.atomic():
        run_id = ApprovalRequest.objects.filter(pk=request_id).values_list("run_id", flat=True).first()
        if run_id is None:
            raise ApprovalRefused(f"there is no approval request {request_id}")
        lock_run(run_id)
        request = ApprovalRequest.objects.select_related("claimed_by", "decided_by", "attempt").get(pk=request_id)
        if request.status != ApprovalStatus.PENDING:
            raise ApprovalRefused(already(request))
        reason = request_refusal(user, request)
        if reason is not None and not (release and reason == FOUR_EYES):
            raise ApprovalRefused(reason)
        now = clock.now()
        log = EventLog(run_id, actor=user)
        if release:
            if request.claimed_by_id != user.pk:
                raise ApprovalRefused("you have not claimed this request")
            request.claimed_by, request.claimed_at = None, None
            log.add(EventKind.APPROVAL_RELEASED, request.attempt, request=request.pk)
        else:
            holder = request.claimed_by
            if holder is not None and holder.pk != user.pk and (now - request.claimed_at).total_seconds() < \
                    CLAIM_STALE_SECONDS:
                raise ApprovalRefused(f"{holder.get_username()} is looking at it since {_when(request.claimed_at)}")
            request.claimed_by, request.claimed_at = user, now
            log.add(EventKind.APPROVAL_CLAIMED, request.attempt, request=request.pk)
        request.save(update_fields=["claimed_by", "claimed_at"])
        log.flush()
    return request
