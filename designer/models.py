"""Drafts: the working copy of a workflow definition people edit in the designer, with every
revision kept (undo, redo, and who changed what). Publishing turns the current revision into an
immutable orchestrator.WorkflowVersion; runs never read drafts."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Draft(models.Model):
    """One per workflow name. ``revision`` is the revision shown and edited: undo moves it
    back, redo forward, and an edit after an undo drops the revisions after it."""

    name = models.CharField(max_length=100, unique=True)
    revision = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"draft of {self.name} (revision {self.revision})"


class DraftRevision(models.Model):
    """The draft's source at one revision, as the person wrote it (YAML comments included)."""

    class Format(models.TextChoices):
        YAML = "yaml", "YAML"
        JSON = "json", "JSON"

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    source = models.TextField()
    format = models.CharField(max_length=4, choices=Format.choices, default=Format.YAML)
    note = models.CharField(max_length=300)  # what changed, in words: "renamed fetch to retrieve"
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["draft", "number"]
        constraints = [models.UniqueConstraint(fields=["draft", "number"], name="draft_revision_unique")]

    def __str__(self) -> str:
        return f"{self.draft.name} r{self.number}: {self.note}"


class Trial(models.Model):
    """One state of a draft tried for real: its handler run once on a worker with an input, its
    effects recorded and not done. Never part of a run; never retried."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="trials")
    revision = models.PositiveIntegerField()
    state_name = models.CharField(max_length=100)
    state = models.JSONField()  # the state's definition as tried
    queue = models.CharField(max_length=100)
    context = models.JSONField(default=dict)  # what the step sees: the run's input, earlier outputs
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    effects = models.JSONField(default=list)  # what it would have done: key, function, flags
    usage = models.JSONField(default=dict)
    worker = models.CharField(max_length=200, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"trial of {self.draft.name}.{self.state_name} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)
