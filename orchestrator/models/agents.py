"""Model calls: the answer an agent state got from its provider, checkpointed as soon as it
arrives, so a step resumed after its worker died replays the answer instead of paying for it
again. A model call is not an effect (asking twice changes nothing outside), but it costs
money and is not deterministic, which is why its answer, not only the step's output, is kept.
"""

from __future__ import annotations

from django.db import models


class ModelCall(models.Model):
    """One answer of a provider to one visit of an agent state.

    A visit replays its latest answer that is not ``discarded``: an attempt that died after the
    answer came (lost, timed out) leaves it for the next one; an attempt that refused it (a route
    outside the definition's, an output breaking its contract) discards it, so a retry asks again.
    """

    run = models.ForeignKey("orchestrator.Run", on_delete=models.CASCADE, related_name="model_calls")
    attempt = models.ForeignKey(
        "orchestrator.StepAttempt", on_delete=models.CASCADE, related_name="model_calls",
        help_text="The attempt that paid for the answer; later attempts of the visit replay it.",
    )
    state_name = models.CharField(max_length=100)
    sequence = models.PositiveIntegerField(help_text="The visit of the agent state (step number).")
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    answer = models.JSONField(help_text="The provider's answer: content, tool calls, route.")
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    latency_ms = models.FloatField(default=0)
    discarded = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["run", "state_name", "sequence"], name="model_call_visit")]

    def __str__(self) -> str:
        return f"{self.model} for {self.state_name}#{self.sequence}"

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out
