"""Workers that are alive, as they report themselves to the database (Redis may be flushed)."""

from __future__ import annotations

from django.db import models


class WorkerBeat(models.Model):
    """One row per worker process, refreshed by its sweeper thread every sweep interval.

    The sweeper reads it to find scheduled work on a queue that no live worker reads.
    """

    name = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
