"""A run's context, written one entry per step instead of rewritten whole.

``Run.context`` is assembled on read: the run's base context (its input) overlaid, in
order, with its entries. A step's output is not copied: its entry points at the attempt
that holds it. So a step writes as many bytes for its context at the end of a long run as
at its start, where rewriting the whole context made the bytes grow with the run's length.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class ContextEntry(models.Model):
    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="context_entries")
    key = models.CharField(max_length=200)
    attempt = models.ForeignKey(
        "orchestrator.StepAttempt", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="The attempt whose output is the value (not copied here).",
    )
    value = models.JSONField(null=True, blank=True, help_text="The value, when it is not an attempt's output.")

    class Meta:
        indexes = [models.Index(fields=["run", "id"], name="context_entry_run_id")]
        verbose_name_plural = "context entries"

    def __str__(self) -> str:
        return f"{self.key} of run {self.run_id}"


def assemble(base: dict[str, Any], run_id: Any) -> dict[str, Any]:
    """The run's context: its base overlaid with its entries, oldest first (later keys win)."""
    context = dict(base)
    entries = ContextEntry.objects.filter(run_id=run_id).order_by("id")
    for key, attempt_id, value, output in entries.values_list("key", "attempt_id", "value", "attempt__output"):
        context[key] = output if attempt_id is not None else value
    return context
