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
