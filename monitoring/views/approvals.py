"""The approvals inbox: pending requests the user may decide (with their context, deadline and
who else may decide), the decided history, and the actions (decide, claim, decide many).

The engine decides and refuses (orchestrator.engine.approvals); a view reads the form, calls
it, and answers: htmx gets the request's card again (409 with the engine's reason when it
refused, 400 when the edited data is not JSON, keeping what was typed), JSON callers get the
message, and a plain form post is redirected back with a message.

Who may decide is the engine's to say, per request (the groups and permissions its definition
names, four-eyes): these views need no role of their own, and a person who may not decide is
refused there (409 with the reason), whatever the page showed them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from orchestrator.engine import approvals
from orchestrator.engine.approval_spec import APPROVE, REJECT
from orchestrator.engine.errors import ApprovalRefused
from orchestrator.models import ApprovalRequest, Workflow

from .. import inbox

BULK_LIMIT = 200
CONFLICT, BAD_REQUEST = 409, 400


@login_required
@require_safe
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    """Pending requests the user may decide (``?tab=decided``: the decided history). Filters
    and tabs live in the query string; htmx asks for the main part alone (#approvals-main)."""
    decided_tab = request.GET.get("tab") == "decided"
    context = _decided_context(request) if decided_tab else _pending_context(request)
    if request.htmx and request.htmx.target == "approvals-main":
        response = render(request, "monitoring/_approval_rows.html", context)
    else:
        response = render(request, "monitoring/approvals.html", context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def _pending_context(request: HttpRequest) -> dict[str, Any]:
    filters = inbox.PendingFilter.from_query(request.GET)
    found, more = inbox.pending(request.user, filters)
    workflows, states = inbox.pending_choices(request.user)
    return {"tab": "pending", "filters": filters, "cards": inbox.cards(found, request.user, people=True),
            "more": more, "workflows": workflows, "states": states, "back": request.get_full_path(),
            "query": urlencode(filters.as_query())}


def _decided_context(request: HttpRequest) -> dict[str, Any]:
    filters = inbox.DecidedFilter.from_query(request.GET)
    found, next_id = inbox.decided(request.user, filters)
    query = urlencode({"tab": "decided", **filters.as_query()})
    return {"tab": "decided", "filters": filters, "decided": found, "query": query,
            "next_url": f"{reverse('monitoring:approvals')}?{query}&before={next_id}" if next_id else "",
            "workflows": list(Workflow.objects.order_by("name").values_list("name", flat=True)),
            "outcomes": [APPROVE, REJECT]}


@login_required
@require_safe
def approvals_badge(request: HttpRequest) -> HttpResponse:
    """The navigation's count of pending requests the user may decide (polled every 15 s)."""
    return render(request, "monitoring/_approval_badge.html", {"approvals_count": inbox.count_for(request.user)})


@dataclass(frozen=True)
class Posted:
    """What a card's form sent: kept to show it again when the decision is refused."""

    outcome: str
    comment: str
    data: str | None
    on_run_page: bool
    back: str

    @classmethod
    def read(cls, request: HttpRequest) -> Posted:
        post = request.POST
        back = post.get("next", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
            back = ""
        return cls(post.get("outcome", "")[:100], post.get("comment", "")[:5000],
                   post.get("data") if "data" in post else None, post.get("view") == "run",
                   back or reverse("monitoring:approvals"))


@login_required
@require_POST
def decide_approval(request: HttpRequest, request_id: int) -> HttpResponse:
    """Decide one request (the clicked outcome, a comment, edited data where allowed)."""
    posted = Posted.read(request)
    found = _found(request_id)
    data: Any = approvals.NO_EDIT
    if posted.data is not None and found.edit_key:
        try:
            data = inbox.parse_edit(found, posted.data)
        except inbox.EditError as error:
            return _answer(request, request_id, posted, f"Not decided: {error}.", status=BAD_REQUEST)
    try:
        decided = approvals.decide(request_id, request.user, posted.outcome, posted.comment, data)
    except ApprovalRefused as refused:
        return _answer(request, request_id, posted, f"Refused: {refused}.", status=CONFLICT)
    edited = " with edited data" if decided.edited else ""
    return _answer(request, request_id, posted, f"Decided “{decided.title}”: {decided.outcome}{edited}.")


@login_required
@require_POST
def claim_approval(request: HttpRequest, request_id: int) -> HttpResponse:
    """Claim a request (others see who is looking at it) or release it (``release=1``)."""
    posted = Posted.read(request)
    release = request.POST.get("release") == "1"
    try:
        approvals.claim(request_id, request.user, release=release)
    except ApprovalRefused as refused:
        return _answer(request, request_id, posted, f"Refused: {refused}.", status=CONFLICT)
    return _answer(request, request_id, posted, "Released: others see it is free." if release else
                   "Claimed: others see you are looking at it.")


def _found(request_id: int) -> ApprovalRequest:
    found = inbox.one(request_id)
    if found is None:
        raise Http404(f"There is no approval request {request_id}.")
    return found


def _answer(request: HttpRequest, request_id: int, posted: Posted, message: str, status: int = 200) -> HttpResponse:
    """The answer to an action on one request: the message (JSON callers), its card again
    (htmx, and a malformed edit without htmx: the form with what was typed), or a redirect back
    with the message."""
    failed = status >= 400
    if request.headers.get("Accept", "").split(",")[0].strip() == "application/json":
        return JsonResponse({"request": request_id, "ok": not failed, "message": message}, status=status)
    if not request.htmx and status != BAD_REQUEST:
        (messages.error if failed else messages.success)(request, message)
        return redirect(posted.back)
    found = _found(request_id)
    card = inbox.cards([found], request.user, decidable=inbox.decidable_ids(request.user, [found]),
                       people=not posted.on_run_page)[0]
    card.error, card.note = (message, "") if failed else ("", message)
    if failed and found.is_pending:
        card.comment = posted.comment
        card.edit_text = posted.data if posted.data is not None else card.edit_text
    context = {"card": card, "on_run_page": posted.on_run_page, "back": posted.back}
    if not request.htmx:
        return render(request, "monitoring/approval_decide.html", context, status=status)
    context.update(oob_badge=True, approvals_count=inbox.count_for(request.user))  # the badge follows
    return render(request, "monitoring/_approval_card.html", context, status=status)


@login_required
@require_POST
def decide_approvals(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected requests with one comment: first a page asking "Approve
    3 requests?", then (``confirmed=1``) each is decided by the engine in turn; the answer says
    how many were decided and why each other one was refused."""
    outcome = request.POST.get("outcome", "")
    ids = list(dict.fromkeys(int(pk) for pk in request.POST.getlist("ids") if pk.isdigit()))[:BULK_LIMIT]
    comment = request.POST.get("comment", "")[:5000]
    back = reverse("monitoring:approvals")
    if outcome not in (APPROVE, REJECT):
        messages.error(request, "Choose Approve selected or Reject selected.")
        return redirect(back)
    if not ids:
        messages.error(request, "Select at least one request first (the boxes beside each).")
        return redirect(back)
    if request.POST.get("confirmed") != "1":
        selected = list(ApprovalRequest.objects.filter(pk__in=ids).select_related("run__workflow").order_by("id"))
        return render(request, "monitoring/approvals_confirm.html",
                      {"outcome": outcome, "selected": selected, "ids": ids, "comment": comment,
                       "missing": len(ids) - len(selected)})
    done, refusals = _decide_each(request.user, ids, outcome, comment)
    if done:
        messages.success(request, f"{done} request{'s' if done != 1 else ''} {outcome}d.")
    for request_id, reason in refusals:
        messages.error(request, f"Request #{request_id} refused: {reason}.")
    return redirect(back)


def _decide_each(user: Any, ids: list[int], outcome: str, comment: str) -> tuple[int, list[tuple[int, str]]]:
    done, refusals = 0, []
    for request_id in ids:
        try:
            approvals.decide(request_id, user, outcome, comment)
        except ApprovalRefused as refused:
            refusals.append((request_id, str(refused)))
        else:
            done += 1
    return done, refusals
