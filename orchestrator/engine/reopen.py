"""Redrive inside branches: reopen what a run's failure stopped, and nothing else.

A run that failed inside a branch failed through its forks: the failing branch's fork
failed (the join could no longer be reached) and so on up to the fork the main line waits
on, and the run's failure cancelled every branch still under way. A redrive walks down from
that top fork: each fork that failed or was cancelled opens again (its counters recounted,
its join deadline restarted), each of its branches that failed or was cancelled runs again
from the visit it stopped in (a new attempt of that visit, so its effects are deduplicated),
and every branch that succeeded keeps its checkpoint. Forks that joined, and branches a join
cancelled, stay as they are.
"""

from __future__ import annotations

from datetime import timedelta

from ..models import AttemptStatus, EventKind, Fork, ForkStatus, Line, LineStatus, Run, StepAttempt
from . import clock
from .attempts import retry_attempt
from .definition import Definition
from .errors import InvalidTransition
from .eventlog import EventLog
from .lines import ancestors

STOPPED_FORKS = (ForkStatus.FAILED, ForkStatus.CANCELLED)
STOPPED_LINES = (LineStatus.FAILED, LineStatus.CANCELLED)
STOPPED_ATTEMPTS = (AttemptStatus.FAILED, AttemptStatus.CANCELLED, AttemptStatus.TIMED_OUT, AttemptStatus.LOST)


def reopen_branches(run: Run, definition: Definition, failed: StepAttempt, log: EventLog) -> list[StepAttempt]:
    """Reopen the forks and branches above and beside ``failed``; returns the new attempts."""
    top = ancestors(failed.line)[0].fork
    forks: list[Fork] = []
    lines: list[Line] = []
    visits: list[StepAttempt] = []
    _plan(top, definition, forks, lines, visits)
    if not visits:
        raise InvalidTransition(
            f"the run failed at the join of '{top.state_name}' (its branches all finished); redriving "
            "would join them the same way again: start a new run")
    now = clock.now()
    reopened = {line.pk for line in lines}
    for fork in forks:
        siblings = [x for x in Line.objects.filter(fork=fork) if x.pk not in reopened]
        timeout = definition.state(fork.state_name).join.timeout_seconds
        Fork.objects.filter(pk=fork.pk).update(
            status=ForkStatus.OPEN, joined_at=None,
            done=sum(1 for x in siblings if x.status == LineStatus.SUCCEEDED),
            failed=sum(1 for x in siblings if x.status == LineStatus.FAILED),
            deadline_at=now + timedelta(seconds=timeout) if timeout else None)
    Line.objects.filter(pk__in=reopened).update(status=LineStatus.RUNNING, error=None, finished_at=None)
    for line in lines:
        log.add(EventKind.BRANCH_RESUMED, state_name=line.position, branch=line.path, reason="redrive")
    fresh = []
    for visit in visits:
        visit.line = Line.objects.select_related("fork__line").get(pk=visit.line_id)
        # A timer or backoff the failure cancelled keeps what was left of it.
        left = (visit.not_before - now).total_seconds() if visit.not_before else 0.0
        fresh.append(retry_attempt(run, visit, log, delay=max(left, 0.0)))
    return fresh


def _plan(fork: Fork, definition: Definition, forks: list[Fork], lines: list[Line],
          visits: list[StepAttempt]) -> None:
    if fork.status not in STOPPED_FORKS:
        return
    forks.append(fork)
    for line in Line.objects.filter(fork=fork, status__in=STOPPED_LINES).order_by("ordinal"):
        lines.append(line)
        if definition.state(line.position).type in ("parallel", "map"):
            inner = Fork.objects.filter(line=line, state_name=line.position).order_by("-sequence").first()
            if inner is not None:
                _plan(inner, definition, forks, lines, visits)
            continue
        last = StepAttempt.objects.filter(line=line).order_by("-id").first()
        if last is not None and last.status in STOPPED_ATTEMPTS:
            visits.append(last)
