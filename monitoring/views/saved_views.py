"""Named saved views of the runs list, one set per user."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..models import BulkOperation, SavedView
from ..runlist import RunFilter, count_matching

NAME_LENGTH = SavedView._meta.get_field("name").max_length


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_POST
def save(request: HttpRequest) -> HttpResponse:
    """Save the filter posted with a name; saving under a name already used replaces that view."""
    filters = RunFilter.from_query(request.POST)
    query = urlencode(filters.as_query())
    back = f"{reverse('monitoring:run_list')}?{query}" if query else reverse("monitoring:run_list")
    name = " ".join(request.POST.get("name", "").split())
    if not name:
        messages.error(request, "Give the view a name.")
    elif len(name) > NAME_LENGTH:
        messages.error(request, f"A view's name has at most {NAME_LENGTH} characters.")
    elif filters.errors or filters.is_empty:
        messages.error(request, "Choose a valid filter before saving it as a view.")
    else:
        _, created = SavedView.objects.update_or_create(owner=request.user, name=name, defaults={"query": query})
        messages.success(request, f"View {name!r} {'saved' if created else 'updated'}.")
    return redirect(back)


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_POST
def delete(request: HttpRequest, view_id: int) -> HttpResponse:
    view = get_object_or_404(SavedView, pk=view_id, owner=request.user)
    view.delete()
    messages.success(request, f"View {view.name!r} deleted.")
    return redirect("monitoring:run_list")


def run_list_tools(request: HttpRequest, filters: RunFilter) -> dict[str, object]:
    """What the runs list shows around its rows: the user's saved views, the count a bulk action
    would start from (only for a valid, non-empty filter: counting every run is never needed),
    and the latest bulk operations."""
    tools: dict[str, object] = {
        "saved_views": list(SavedView.objects.filter(owner=request.user)),
        "bulk_operations": list(BulkOperation.objects.select_related("requested_by")[:5]),
    }
    if not filters.is_empty and not filters.errors:
        tools["matching"] = count_matching(filters)
    return tools
