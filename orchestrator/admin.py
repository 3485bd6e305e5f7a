"""Admin: workflows are editable; versions, runs, attempts, events and effects are history.

History is read-only here: run state changes only through engine operations (admin actions
call them), so every change leaves its event.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from .engine.errors import RatchetError
from .engine.runs import cancel_run, redrive_run
from .models import (
    ApprovalRequest,
    AuditEntry,
    Effect,
    Event,
    Fork,
    Line,
    Run,
    StepAttempt,
    WorkerBeat,
    Workflow,
    WorkflowVersion,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.fields or [])

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class VersionInline(ReadOnlyInline):
    model = WorkflowVersion
    fields = ["number", "content_hash", "created_at", "created_by"]


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "title", "topology", "updated_at"]
    search_fields = ["name", "title"]
    inlines = [VersionInline]


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "number", "content_hash", "created_at", "created_by"]
    list_filter = ["workflow"]


class AttemptInline(ReadOnlyInline):
    model = StepAttempt
    fields = ["state_name", "kind", "sequence", "attempt", "status", "worker", "claimed_at", "finished_at",
              "error"]


class LineInline(ReadOnlyInline):
    model = Line
    fields = ["path", "status", "position", "finished_at", "error"]


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "workflow", "version", "status", "failure_mode", "steps_used", "resume_count",
                    "created_at", "finished_at"]
    list_filter = ["status", "failure_mode", "workflow"]
    search_fields = ["id", "idempotency_key"]
    date_hierarchy = "created_at"
    inlines = [LineInline, AttemptInline]
    actions = ["cancel_selected", "redrive_selected"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing is allowed; the form has no editable fields (all read-only).
        return request.user.has_perm("orchestrator.view_run")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def _apply(self, request: HttpRequest, queryset: Any, operation: Any, verb: str) -> None:
        done = 0
        for run in queryset:
            try:
                operation(run.pk, request.user)
                done += 1
            except RatchetError as exc:
                self.message_user(request, f"{run}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"{verb} {done} run(s).", messages.SUCCESS)

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Cancelling and redriving need the operators' permission, not only seeing runs (which
        is what has_change_permission answers, so that the read-only form opens)."""
        return request.user.has_perm("orchestrator.change_run")

    @admin.action(description="Cancel selected runs", permissions=["act"])
    def cancel_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._apply(request, queryset, cancel_run, "Cancelled")

    @admin.action(description="Redrive selected failed runs", permissions=["act"])
    def redrive_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._apply(request, queryset, redrive_run, "Redrove")


@admin.register(StepAttempt)
class StepAttemptAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "state_name", "kind", "sequence", "attempt", "status", "worker", "claimed_at",
                    "finished_at"]
    list_filter = ["status", "kind"]
    search_fields = ["run__id", "state_name"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "kind", "state_name", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["run__id"]


@admin.register(Effect)
class EffectAdmin(ReadOnlyAdmin):
    list_display = ["key", "run", "scope", "status", "executions", "duplicates", "unknown_retries", "dedup_hits",
                    "downstream_idempotent", "confirmed_at"]
    list_filter = ["status", "downstream_idempotent"]
    search_fields = ["key", "run__id"]


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    """Decisions are made in the Approvals inbox (or the API), where they are checked."""

    list_display = ("title", "run", "state_name", "status", "outcome", "decided_by", "created_at", "due_at")
    list_filter = ("status", "outcome", "gate", "timed_out")
    search_fields = ("title", "state_name", "run__id")
    raw_id_fields = ("run", "attempt")


@admin.register(Fork)
class ForkAdmin(ReadOnlyAdmin):
    list_display = ["path", "run", "status", "done", "failed", "needed", "total", "created_at", "joined_at"]
    list_filter = ["status"]


@admin.register(WorkerBeat)
class WorkerBeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "queues", "started_at", "last_seen_at"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "action", "target_type", "target_id", "workflow_name", "address"]
    list_filter = ["action"]
    search_fields = ["actor_name", "target_id", "workflow_name"]
    date_hierarchy = "at"
    readonly_fields = ["at", "actor", "actor_name", "action", "target_type", "target_id", "run", "workflow_name",
                       "detail", "address"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("orchestrator.view_audit")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or request.user.has_perm("orchestrator.view_audit")
