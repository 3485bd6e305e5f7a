"""Workflows and their immutable, numbered versions."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models


def content_hash(definition: dict[str, Any]) -> str:
    """A stable hash of a definition: same content, same hash, whatever the key order."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Topology(models.TextChoices):
    SINGLE = "single", "Single agent"
    PIPELINE = "pipeline", "Pipeline"
    SUPERVISOR_WORKER = "supervisor_worker", "Supervisor / worker"
    NETWORK = "network", "Peer network"


class Workflow(models.Model):
    name = models.SlugField(max_length=100, unique=True, help_text="Identifier used to start runs.")
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    topology = models.CharField(max_length=32, choices=Topology.choices, default=Topology.PIPELINE)
    draft = models.JSONField(default=dict, blank=True, help_text="The definition being edited.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def latest_version(self) -> WorkflowVersion | None:
        return self.versions.order_by("-number").first()


class ImmutableVersionError(Exception):
    pass


class WorkflowVersion(models.Model):
    """A published definition. Never changes once saved: runs are pinned to it."""

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    content_hash = models.CharField(max_length=64)
    message = models.CharField(max_length=500, blank=True)  # what the publisher said changed
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["workflow__name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="version_number_unique"),
            models.UniqueConstraint(fields=["workflow", "content_hash"], name="version_content_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ImmutableVersionError(f"{self} is published and cannot change; publish a new version")
        self.content_hash = content_hash(self.definition)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableVersionError(f"{self} is published and cannot be deleted")
