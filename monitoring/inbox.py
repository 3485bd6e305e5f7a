"""The approvals inbox's queries, and what its cards show.

Everything a page lists is loaded in a fixed number of statements whatever the number of
requests: the related rows come with ``select_related`` and ``prefetch_related``, and the
people who may decide are worked out for a whole page at once. Who may decide stays the engine's
(``decidable_by``); deciding is the engine's too: nothing here changes a request.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.db.models import F, Prefetch, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from orchestrator.engine.approval_access import FOUR_EYES, decidable_by, describe, known_refusal
from orchestrator.engine.approval_spec import APPROVE, REJECT
from orchestrator.engine.approvals import NO_EDIT
from orchestrator.models import ApprovalRequest, ApprovalStatus, Run

from .templatetags.ratchet_ui import duration

PAGE = 100
HISTORY_PAGE = 50
PEOPLE_SHOWN = 8
YES = {"1", "on", "true", "yes"}
MISSING = object()


# --- filters (kept in the URL) --------------------------------------------------------------------


@dataclass(frozen=True)
class PendingFilter:
    """Which pending requests the inbox shows: one workflow, one state, only overdue or
    escalated ones (``urgent``), only those the user claimed (``mine``)."""

    workflow: str = ""
    state: str = ""
    urgent: bool = False
    mine: bool = False

    @classmethod
    def from_query(cls, query: QueryDict) -> PendingFilter:
        return cls(query.get("workflow", "")[:100], query.get("state", "")[:100],
                   query.get("urgent", "").lower() in YES, query.get("mine", "").lower() in YES)

    def as_query(self) -> dict[str, str]:
        values = {"workflow": self.workflow, "state": self.state, "urgent": "1" if self.urgent else "",
                  "mine": "1" if self.mine else ""}
        return {key: value for key, value in values.items() if value}

    @property
    def is_empty(self) -> bool:
        return not self.as_query()


@dataclass(frozen=True)
class DecidedFilter:
    """Which decided requests the history shows: one outcome, one workflow, only the user's
    decisions (``mine``); ``before`` is the id of the last request of the previous page."""

    outcome: str = ""
    workflow: str = ""
    mine: bool = False
    before: int | None = None

    @classmethod
    def from_query(cls, query: QueryDict) -> DecidedFilter:
        before = query.get("before", "")
        return cls(query.get("outcome", "")[:100], query.get("workflow", "")[:100],
                   query.get("mine", "").lower() in YES, int(before) if before.isdigit() else None)

    def as_query(self) -> dict[str, str]:
        values = {"outcome": self.outcome, "workflow": self.workflow, "mine": "1" if self.mine else ""}
        return {key: value for key, value in values.items() if value}

    @property
    def is_empty(self) -> bool:
        return not self.as_query()


# --- queries ----------------------------------------------------------------------------------------


def with_related(requests: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """``requests`` with everything a card shows, in three statements for any number of them."""
    return requests.select_related("run__workflow", "run__version", "attempt", "claimed_by", "decided_by") \
        .prefetch_related("groups", Prefetch("permissions", queryset=Permission.objects.select_related(
            "content_type")))


def pending(user: Any, filters: PendingFilter, now: datetime | None = None) -> tuple[list[ApprovalRequest], bool]:
    """The pending requests ``user`` may decide, oldest due first (no due time last), then
    oldest requested; and whether there are more than a page of them."""
    now = now or timezone.now()
    requests = decidable_by(user)
    if filters.workflow:
        requests = requests.filter(run__workflow__name=filters.workflow)
    if filters.state:
        requests = requests.filter(state_name=filters.state)
    if filters.urgent:
        requests = requests.filter(Q(due_at__lt=now) | Q(escalation_level__gt=0))
    if filters.mine:
        requests = requests.filter(claimed_by=user)
    found = list(with_related(requests).order_by(F("due_at").asc(nulls_last=True), "created_at", "id")[:PAGE + 1])
    return found[:PAGE], len(found) > PAGE


def pending_choices(user: Any) -> tuple[list[str], list[str]]:
    """The workflows and states of the requests ``user`` may decide (the filters' choices)."""
    pairs = list(decidable_by(user).order_by().values_list("run__workflow__name", "state_name").distinct())
    return sorted({name for name, _ in pairs}), sorted({state for _, state in pairs})


def decided(user: Any, filters: DecidedFilter) -> tuple[list[ApprovalRequest], int | None]:
    """A page of decided requests, newest decision first; and the id the next page starts
    after (None: this is the last page)."""
    requests = ApprovalRequest.objects.filter(status=ApprovalStatus.DECIDED)
    if filters.outcome:
        requests = requests.filter(outcome=filters.outcome)
    if filters.workflow:
        requests = requests.filter(run__workflow__name=filters.workflow)
    if filters.mine:
        requests = requests.filter(decided_by=user)
    if filters.before is not None:
        last = ApprovalRequest.objects.filter(pk=filters.before).values_list("decided_at", flat=True).first()
        if last is not None:
            requests = requests.filter(Q(decided_at__lt=last) | Q(decided_at=last, id__lt=filters.before))
    found = list(requests.select_related("run__workflow", "decided_by")
                 .order_by(F("decided_at").desc(nulls_last=True), "-id")[:HISTORY_PAGE + 1])
    page = found[:HISTORY_PAGE]
    return page, (page[-1].pk if len(found) > HISTORY_PAGE else None)


def count_for(user: Any) -> int:
    """How many pending requests ``user`` may decide (the navigation's badge: one statement)."""
    return decidable_by(user).count()


def one(request_id: int) -> ApprovalRequest | None:
    return with_related(ApprovalRequest.objects.filter(pk=request_id)).first()


def of_run(run: Run) -> list[ApprovalRequest]:
    """The run's requests, newest first (the run page's panel: three statements, or one)."""
    requests = list(ApprovalRequest.objects.filter(run=run).select_related("attempt", "claimed_by", "decided_by")
                    .prefetch_related("groups", Prefetch("permissions", queryset=Permission.objects.select_related(
                        "content_type"))).order_by("-created_at", "-id"))
    for request in requests:
        request.run = run
    return requests


def run_cards(run: Run, user: Any) -> list[Card]:
    """The run page's approvals panel: the run's requests, newest first, each saying whether
    ``user`` may decide it (at most four statements, whatever the number of requests)."""
    requests = of_run(run)
    user = user if user is not None else AnonymousUser()
    return cards(requests, user, decidable=decidable_ids(user, requests))


def decidable_ids(user: Any, requests: Iterable[ApprovalRequest]) -> set[int]:
    """Which of ``requests`` (the pending ones) ``user`` may decide: one statement, or none."""
    ids = [request.pk for request in requests if request.is_pending]
    if not ids or user is None or not user.is_authenticated:
        return set()
    return set(decidable_by(user).filter(pk__in=ids).values_list("pk", flat=True))


def who_may_decide(requests: Sequence[ApprovalRequest]) -> dict[int, list[tuple[int, str]]]:
    """For each request, the active people who may decide it, as (id, username), four-eyes
    applied: superusers, members of its groups, and holders of its permissions (directly or
    through a group). Four statements for a whole page of requests."""
    if not requests:
        return {}
    users = get_user_model()
    group_ids = {group.pk for request in requests for group in request.groups.all()}
    permission_ids = {permission.pk for request in requests for permission in request.permissions.all()}
    supers = set(users.objects.filter(is_active=True, is_superuser=True).values_list("pk", "username"))
    holding_groups: dict[int, set[int]] = defaultdict(set)
    for group_id, permission_id in Group.permissions.through.objects.filter(
            permission_id__in=permission_ids).values_list("group_id", "permission_id"):
        holding_groups[permission_id].add(group_id)
    members: dict[int, set[tuple[int, str]]] = defaultdict(set)
    wanted = group_ids | {group for groups in holding_groups.values() for group in groups}
    for group_id, user_id, name in users.groups.through.objects.filter(
            group_id__in=wanted, user__is_active=True).values_list("group_id", "user_id", "user__username"):
        members[group_id].add((user_id, name))
    holders: dict[int, set[tuple[int, str]]] = defaultdict(set)
    for permission_id, user_id, name in users.user_permissions.through.objects.filter(
            permission_id__in=permission_ids, user__is_active=True).values_list(
            "permission_id", "user_id", "user__username"):
        holders[permission_id].add((user_id, name))
    found = {}
    for request in requests:
        people = set(supers)
        for group in request.groups.all():
            people |= members[group.pk]
        for permission in request.permissions.all():
            people |= holders[permission.pk]
            for group_id in holding_groups[permission.pk]:
                people |= members[group_id]
        if request.four_eyes and request.requested_by_id is not None:
            people = {person for person in people if person[0] != request.requested_by_id}
        found[request.pk] = sorted(people, key=lambda person: person[1])
    return found


# --- what a card shows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One decision's way on: ``state`` --outcome--> ``target`` (or what ending it means)."""

    outcome: str
    target: str
    ending: str = ""


def transitions(request: ApprovalRequest) -> list[Transition]:
    """Where each outcome leads, as the engine applies it: approve to its state (or the line
    ends), reject to its state (or the line fails as rejected), a labelled outcome to its state."""
    line = "branch" if request.branch_path else "run"
    shown = []
    for outcome, target in request.outcomes:
        ending = "" if target else (f"fails the {line} (rejected)" if outcome == REJECT else f"ends the {line}")
        shown.append(Transition(outcome, target, ending))
    return shown


@dataclass(frozen=True)
class Due:
    text: str
    overdue: bool = False


def due(request: ApprovalRequest, now: datetime) -> Due:
    if request.due_at is None:
        return Due("no due time")
    seconds = (request.due_at - now).total_seconds()
    if seconds >= 0:
        return Due(f"due in {duration(seconds)}")
    return Due(f"overdue by {duration(-seconds)}", overdue=True)


def current_value(request: ApprovalRequest) -> Any:
    """The value at the request's editable path: in what the reviewer is shown, else in the
    run's context (MISSING when neither has it)."""
    top, *rest = request.edit_key.split(".")
    proposed = request.proposed if isinstance(request.proposed, dict) else {}
    value: Any = proposed[top] if top in proposed else request.run.context.get(top, MISSING)
    for part in rest:
        value = value.get(part, MISSING) if isinstance(value, dict) else MISSING
    return value


def edit_text(value: Any) -> str:
    """How the editable value is put in the textarea: a string as it is, anything else as JSON."""
    if value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


class EditError(ValueError):
    """The edited text cannot be read (the message says where)."""


def parse_edit(request: ApprovalRequest, text: str) -> Any:
    """The edited value from the textarea: NO_EDIT when it is what was shown; the text itself
    where the value is a string; else the JSON it holds (EditError when it is not JSON)."""
    original = current_value(request)
    text = text.replace("\r\n", "\n")
    if text == edit_text(original) or (original is MISSING and not text.strip()):
        return NO_EDIT
    if isinstance(original, str):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise EditError(f"the edited {request.edit_key} is not valid JSON ({error.msg} at line {error.lineno}, "
                        f"column {error.colno}); nothing was decided") from None
    return NO_EDIT if value == original else value


@dataclass
class Card:
    """One request as a card shows it (the inbox, the run page, an action's answer)."""

    request: ApprovalRequest
    transitions: list[Transition]
    due: Due
    approvers: str
    refusal: str | None = None
    people: list[str] | None = None
    edit_text: str = ""
    edit_kind: str = "JSON"
    comment: str = ""
    error: str = ""
    note: str = ""
    claimed_by_me: bool = False
    classes: list[str] = field(default_factory=list)

    @property
    def escalated(self) -> bool:
        return self.request.escalation_level > 0

    @property
    def may_try(self) -> bool:
        """Show the decision form: the user may decide, or is an approver held back only by
        four-eyes (the engine's refusal then says why, where they clicked)."""
        return self.request.is_pending and self.refusal in (None, FOUR_EYES)

    @property
    def labelled(self) -> list[str]:
        return [name for name in self.request.outcome_names if name not in (APPROVE, REJECT)]


def cards(requests: Sequence[ApprovalRequest], user: Any, *, decidable: set[int] | None = None,
          people: bool = False, now: datetime | None = None) -> list[Card]:
    """Cards for ``requests``. ``decidable``: the pending ones the user may decide (None: all
    of them, as in the inbox); ``people``: also list who else may decide (four statements)."""
    now = now or timezone.now()
    everyone = who_may_decide(requests) if people else {}
    shown = []
    for request in requests:
        groups = sorted(group.name for group in request.groups.all())
        permissions = sorted(f"{p.content_type.app_label}.{p.codename}" for p in request.permissions.all())
        allowed = decidable is None or request.pk in decidable
        value = current_value(request) if request.edit_key else MISSING
        card = Card(request, transitions(request), due(request, now), describe(groups, permissions),
                    refusal=None if allowed or not request.is_pending else known_refusal(
                        user, groups=groups, permissions=permissions, four_eyes=request.four_eyes,
                        requested_by_id=request.requested_by_id),
                    edit_text=edit_text(value), edit_kind="text" if isinstance(value, str) else "JSON",
                    claimed_by_me=request.claimed_by_id is not None and request.claimed_by_id == user.pk)
        if people:
            card.people = [name for pk, name in everyone.get(request.pk, []) if pk != user.pk][:PEOPLE_SHOWN]
        card.classes = _classes(card)
        shown.append(card)
    return shown


def _classes(card: Card) -> list[str]:
    request = card.request
    classes = [f"approval-{request.status}"]
    if request.is_pending and card.due.overdue:
        classes.append("overdue")
    if request.is_pending and card.escalated:
        classes.append("escalated")
    return classes
