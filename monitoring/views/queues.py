from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from orchestrator.engine import clock

from ..queues import queues_report


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def queues(request: HttpRequest) -> HttpResponse:
    """Each queue's waiting and running work, the live workers and what they run, and the workers
    that died in the last hour; ``?fragment=1`` answers only the part the page refreshes every 5 s."""
    # The database's clock as last measured, without measuring it now (that would be a query
    # some requests make and others do not).
    context = {"report": queues_report(timezone.now() + clock.offset())}
    if request.GET.get("fragment") == "1":
        return render(request, "monitoring/_queues.html", context)
    return render(request, "monitoring/queues.html", context)
