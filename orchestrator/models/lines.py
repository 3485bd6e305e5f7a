"""Lines of execution: a run's main line is the run itself; every branch of a parallel state
is a Line of its own, and every visit of a parallel state is a Fork that holds the join counter.

Why rows, and why the fork holds the counter: a branch can wait for a person or pause on an
uncertain effect while its siblings go on, so each needs a status of its own; a branch's
outputs must not overwrite its siblings', so each has a context of its own; and "the last
branch to finish, and only it, joins" needs a counter updated in the same transaction as that
branch's checkpoint, under the run's row lock. A line can fork more than once (a loop, or two
parallel states in a row), so the counter belongs to the fork (one visit), not to the line.
"""

from __future__ import annotations

from django.db import models


class ForkStatus(models.TextChoices):
    OPEN = "open", "Branches running"
    JOINED = "joined", "Joined"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Fork(models.Model):
    """One visit of a parallel state (a line per branch) or of a map state (a line per item,
    started as the concurrency cap allows)."""

    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="forks")
    kind = models.CharField(max_length=16, default="parallel", help_text="parallel or map")
    line = models.ForeignKey(
        "orchestrator.Line", null=True, blank=True, on_delete=models.CASCADE, related_name="forks",
        help_text="The line the parallel state runs in; empty: the main line.",
    )
    state_name = models.CharField(max_length=100)
    sequence = models.PositiveIntegerField(help_text="The parallel state's visit (step number).")
    path = models.CharField(max_length=300, help_text="<parent line path>/<state>#<visit>")
    total = models.PositiveIntegerField()
    needed = models.PositiveIntegerField(help_text="Branches that must succeed for the join.")
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    started = models.PositiveIntegerField(default=0, help_text="Lines started so far (a map starts them as it can).")
    limit = models.PositiveIntegerField(null=True, blank=True, help_text="A map's concurrency cap.")
    items = models.JSONField(null=True, blank=True, help_text="A map's items, in order.")
    status = models.CharField(max_length=16, choices=ForkStatus.choices, default=ForkStatus.OPEN)
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="Join timeout.")
    created_at = models.DateTimeField()
    joined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["status", "deadline_at"], name="fork_status_deadline")]

    def __str__(self) -> str:
        return f"{self.path} ({self.done}/{self.needed} of {self.total})"


class LineStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused: an operator must decide"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Line(models.Model):
    """One branch of one fork: its status, position and context scope."""

    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="lines")
    fork = models.ForeignKey(Fork, on_delete=models.CASCADE, related_name="lines")
    branch = models.CharField(max_length=100)
    ordinal = models.PositiveIntegerField(help_text="The branch's place in the definition.")
    path = models.CharField(max_length=300, help_text="<fork path>/<branch>: the attempts' branch_path.")
    status = models.CharField(max_length=16, choices=LineStatus.choices, default=LineStatus.RUNNING)
    position = models.CharField(max_length=100, blank=True, help_text="The state the line is in.")
    context = models.JSONField(default=dict, blank=True, help_text="Outputs of this branch's steps.")
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.path} ({self.status})"
