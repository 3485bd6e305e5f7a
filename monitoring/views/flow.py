from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from orchestrator.engine import breakers

from ..flow import limit_states, throttling

WINDOW = timedelta(hours=1)


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def flow_control(request: HttpRequest) -> HttpResponse:
    """Each shared rate limit (RATCHET_RATE_LIMITS) with the steps waiting under it now and what
    it throttled in the last hour, and each circuit breaker (RATCHET_CIRCUIT_BREAKERS) with its
    state; ``?fragment=1`` answers the part refreshed every 5 seconds."""
    now = timezone.now()
    context = {"limits": limit_states(now - WINDOW, now), "throttled": throttling(now - WINDOW, now),
               "breakers": breakers.states()}
    if request.GET.get("fragment") == "1":
        return render(request, "monitoring/_flow.html", context)
    return render(request, "monitoring/flow.html", context)


@login_required
@permission_required("orchestrator.reset_breaker", raise_exception=True)
@require_POST
def reset_breaker(request: HttpRequest) -> HttpResponse:
    """Close a circuit breaker by hand, once its tool is back."""
    handler = request.POST.get("handler", "")
    if handler not in breakers.configured():
        messages.error(request, f"No circuit breaker guards {handler[:100]!r}.")
    else:
        breakers.reset(handler, user=request.user)
        messages.success(request, f"The circuit breaker of {handler} is closed; its steps go on.")
    return redirect("monitoring:flow")
