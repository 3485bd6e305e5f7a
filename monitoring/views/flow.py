from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from ..flow import limit_states, throttling

WINDOW = timedelta(hours=1)


@login_required
def flow_control(request: HttpRequest) -> HttpResponse:
    """Each shared rate limit (RATCHET_RATE_LIMITS) with the steps waiting under it now and what
    it throttled in the last hour; ``?fragment=1`` answers the part refreshed every 5 seconds."""
    now = timezone.now()
    context = {"limits": limit_states(now - WINDOW, now), "throttled": throttling(now - WINDOW, now)}
    if request.GET.get("fragment") == "1":
        return render(request, "monitoring/_flow.html", context)
    return render(request, "monitoring/flow.html", context)
