"""What people record about what they see on the pages (the engine's data lives in orchestrator)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ClusterNote(models.Model):
    """An operator acknowledged a failure cluster (a workflow's runs failing for one cause) and
    said what is being done; the dashboard shows it beside the cluster, and lists the clusters
    nobody acknowledged first."""

    workflow = models.ForeignKey("orchestrator.Workflow", on_delete=models.CASCADE, related_name="+")
    fingerprint = models.CharField(max_length=16)
    note = models.TextField(max_length=2000)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "fingerprint"], name="cluster_note_unique")]

    def __str__(self) -> str:
        return f"{self.workflow_id}/{self.fingerprint}: {self.note[:40]}"


class SavedView(models.Model):
    """A user's named filter of the runs list (the query string, as the list reads it)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="saved_view_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.query})"


class BulkAction(models.TextChoices):
    CANCEL = "cancel", "Cancel"
    REDRIVE = "redrive", "Redrive"


class BulkStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    STOPPED = "stopped", "Stopped"


class BulkOperation(models.Model):
    """One action applied to every run a filter matched when a person confirmed it.

    The filter is kept as the runs list's query string, with the moment of confirmation
    (``as_of``): runs started later are never touched, and a time range counts back from then.
    Work goes in chunks by run id (``cursor``), each chunk one transaction with the counts, so a
    worker lost mid-way loses nothing: the sweeper hands a stalled operation to another worker,
    which goes on after the last committed chunk, and no run is acted on twice.
    """

    action = models.CharField(max_length=16, choices=BulkAction.choices)
    query = models.CharField(max_length=1000)
    as_of = models.DateTimeField()
    reason = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="+")
    status = models.CharField(max_length=16, choices=BulkStatus.choices, default=BulkStatus.QUEUED)
    stop_requested = models.BooleanField(default=False)
    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=36, blank=True)
    problems = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="bulk_status_heartbeat")]

    def __str__(self) -> str:
        return f"{self.action} #{self.pk} ({self.status})"

    @property
    def processed(self) -> int:
        return self.succeeded + self.skipped + self.failed

    @property
    def is_finished(self) -> bool:
        return self.status in (BulkStatus.DONE, BulkStatus.STOPPED)

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, round(100 * self.processed / self.total))


class BulkTarget(models.Model):
    """A run a bulk operation acted on (written in the chunk's transaction), so the operation's
    page can show how its runs fare afterwards: a redriven cluster draining."""

    operation = models.ForeignKey(BulkOperation, on_delete=models.CASCADE, related_name="targets")
    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["operation", "run"], name="bulk_target_unique")]

    def __str__(self) -> str:
        return f"{self.operation_id} → {self.run_id}"


class RollupCursor(models.Model):
    """How far the hourly KPI rollups reach: every hour in ``[rolled_from, rolled_through)`` is
    rolled up (KpiHour and StateHour rows, none for an hour without activity). One row; the
    worker that rolls up holds it locked, so two workers never roll the same hours."""

    rolled_from = models.DateTimeField(null=True, blank=True)
    rolled_through = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)  # the last comparison with the live rows
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rolled {self.rolled_from} .. {self.rolled_through}"


class KpiHour(models.Model):
    """The KPI figures of one hour for one workflow version, top-level runs and sub-runs apart
    (monitoring/rollups.py says which rows each family counts). Durations are histograms
    (monitoring/histograms.py): percentiles of many hours are read from their sum."""

    hour = models.DateTimeField()
    workflow = models.ForeignKey("orchestrator.Workflow", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("orchestrator.WorkflowVersion", on_delete=models.CASCADE, related_name="+")
    child = models.BooleanField()
    # runs that finished in the hour
    finished = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    resumed = models.PositiveIntegerField(default=0)
    resumed_succeeded = models.PositiveIntegerField(default=0)
    budget_kills = models.PositiveIntegerField(default=0)
    compensated = models.PositiveIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    latency = models.JSONField(default=dict)
    latency_net = models.JSONField(default=dict)
    # effects of those runs
    effect_keys = models.PositiveIntegerField(default=0)
    duplicated = models.PositiveIntegerField(default=0)
    possible_duplicates = models.PositiveIntegerField(default=0)
    dedup_hits = models.PositiveIntegerField(default=0)
    # step attempts that finished in the hour, and attempts claimed in it
    steps = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    queue_wait = models.JSONField(default=dict)
    rolled_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "workflow", "version", "child"],
                                               name="kpi_hour_unique")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.workflow_id}/{self.version_id}{' (sub-runs)' if self.child else ''}"


class StateHour(models.Model):
    """How long one state's step attempts that finished in the hour ran (a histogram)."""

    hour = models.DateTimeField()
    workflow = models.ForeignKey("orchestrator.Workflow", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("orchestrator.WorkflowVersion", on_delete=models.CASCADE, related_name="+")
    state_name = models.CharField(max_length=100)
    durations = models.JSONField(default=dict)
    rolled_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "workflow", "version", "state_name"],
                                               name="state_hour_unique")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.workflow_id}/{self.version_id} {self.state_name}"
