"""The user's API tokens page: create one (its secret shown once), see them, revoke one."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from ..models import ApiToken

MAX_DAYS = 366


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's tokens; POST creates one, named, expiring after ``days`` (empty: never)."""
    context: dict[str, object] = {"tokens": request.user.api_tokens.all(), "max_days": MAX_DAYS}
    if request.method == "POST":
        name, days = request.POST.get("name", "").strip(), request.POST.get("days", "").strip()
        problem = ""
        if not name or len(name) > 100:
            problem = "name the token (what uses it), in at most 100 characters"
        elif days and (not days.isdigit() or not 1 <= int(days) <= MAX_DAYS):
            problem = f"expiry is a number of days from 1 to {MAX_DAYS}, or empty for none"
        if problem:
            return render(request, "api/tokens.html", {**context, "error": problem, "typed": name}, status=400)
        expires = timezone.now() + timedelta(days=int(days)) if days else None
        token, secret = ApiToken.issue(request.user, name, expires)
        context.update(created=token, secret=secret)
    return render(request, "api/tokens.html", context)


@login_required
@require_POST
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's own tokens (another person's is not found: 404)."""
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.revoke(by=request.user)
    return redirect("api_tokens")
