"""The audit trail page, for those with ``orchestrator.view_audit``: who did what and when,
newest first, filtered by the query string (who, action, run, workflow, a date range), a page
at a time; htmx swaps the table alone (#audit-main) when a filter changes. And the run page's
short list of the audit entries of one run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_safe
from django_htmx.http import push_url

from orchestrator.models import AuditAction, AuditEntry, Run, Workflow

PAGE_SIZE = 50
RUN_PAGE_ENTRIES = 50
BAD_REQUEST = 400


@dataclass
class AuditFilter:
    actor: str = ""
    action: str = ""
    run: str = ""
    workflow: str = ""
    since: date | None = None
    until: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, query: QueryDict) -> AuditFilter:
        found = cls(actor=query.get("actor", "").strip()[:150], action=query.get("action", "").strip(),
                    run=query.get("run", "").strip(), workflow=query.get("workflow", "").strip()[:100])
        if found.action and found.action not in AuditAction.values:
            found.errors["action"] = f"no action {found.action[:40]!r}; choose one of the list"
            found.action = ""
        if found.run:
            try:
                found.run = str(uuid.UUID(found.run))
            except ValueError:
                found.errors["run"] = "a run is named by its id (a UUID, as in its page's address)"
                found.run = ""
        for name in ("since", "until"):
            text = query.get(name, "").strip()
            try:
                moment = parse_date(text) if text else None
            except ValueError:
                moment = None
            if text and moment is None:
                found.errors[name] = "a date as YYYY-MM-DD"
            setattr(found, name, moment)
        if found.since and found.until and found.since > found.until:
            found.errors["until"] = "the end of the range is before its start"
        return found

    @property
    def is_empty(self) -> bool:
        return not any(self.as_query().values())

    def as_query(self) -> dict[str, str]:
        values = {"actor": self.actor, "action": self.action, "run": self.run, "workflow": self.workflow,
                  "since": self.since.isoformat() if self.since else "",
                  "until": self.until.isoformat() if self.until else ""}
        return {key: value for key, value in values.items() if value}

    def apply(self, entries: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        """Narrow ``entries`` by the filters; dates are days in the user's time zone."""
        if self.actor:
            entries = entries.filter(actor_name__iexact=self.actor)
        if self.action:
            entries = entries.filter(action=self.action)
        if self.run:
            entries = entries.filter(run_id=self.run)
        if self.workflow:
            entries = entries.filter(workflow_name=self.workflow)
        zone = timezone.get_current_timezone()
        if self.since:
            entries = entries.filter(at__gte=datetime.combine(self.since, time.min, tzinfo=zone))
        if self.until:
            entries = entries.filter(at__lt=datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=zone))
        return entries


def _page(filters: AuditFilter, before: str) -> tuple[list[AuditEntry], int | None]:
    """A page of matching entries, newest first, older than entry id ``before``; and the id the
    next page starts before (None: this is the last page)."""
    entries = filters.apply(AuditEntry.objects.select_related("run__workflow")).order_by("-id")
    if before.isdigit():
        entries = entries.filter(id__lt=int(before))
    found = list(entries[: PAGE_SIZE + 1])
    page = found[:PAGE_SIZE]
    return page, (page[-1].pk if len(found) > PAGE_SIZE else None)


@login_required
@permission_required("orchestrator.view_audit", raise_exception=True)
@require_safe
def audit_trail(request: HttpRequest) -> HttpResponse:
    filters = AuditFilter.from_query(request.GET)
    before = request.GET.get("before", "")
    entries, next_before = _page(filters, before) if not filters.errors else ([], None)
    query = urlencode(filters.as_query())
    context: dict[str, Any] = {
        "filters": filters, "entries": entries, "query": query, "before": before,
        "next_url": f"?{query}{'&' if query else ''}before={next_before}" if next_before else "",
        "actions": AuditAction.choices,
        "workflows": list(Workflow.objects.order_by("name").values_list("name", flat=True)),
    }
    if request.htmx and request.htmx.target == "audit-main":
        # 200 even with errors: htmx swaps only successes, and the errors are shown in the part.
        response = render(request, "monitoring/_audit_rows.html", context)
        if not before:  # the address shows the filters set, without the form's empty fields
            push_url(response, f"{request.path}?{query}" if query else request.path)
    else:
        response = render(request, "monitoring/audit.html", context, status=BAD_REQUEST if filters.errors else 200)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def run_audit(run: Run) -> list[AuditEntry]:
    """The run's audit entries, oldest first (who started, cancelled, approved it...)."""
    return list(AuditEntry.objects.filter(run=run).order_by("id")[:RUN_PAGE_ENTRIES])
