"""The provider interface: a request in OpenAI's chat format, an answer with its usage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ...conf import ratchet_setting
from ..errors import HandlerNotFound


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ModelRequest:
    """``messages`` and ``tools`` in OpenAI's chat completions format (the lingua franca of
    hosted and local servers alike)."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ModelAnswer:
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal | None = None  # as the provider reported it; None: priced from MODEL_PRICES
    model: str = ""

    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call_message(c) for c in self.tool_calls]
        return message

    def as_data(self) -> dict[str, Any]:
        return {"content": self.content, "model": self.model,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls]}

    @classmethod
    def from_data(cls, data: dict[str, Any], tokens_in: int = 0, tokens_out: int = 0) -> ModelAnswer:
        calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in data.get("tool_calls", []))
        return cls(data.get("content"), calls, tokens_in, tokens_out, None, data.get("model", ""))


def call_message(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, sort_keys=True)}}


class Provider(Protocol):
    name: str

    def default_model(self) -> str: ...

    def complete(self, request: ModelRequest) -> ModelAnswer: ...


def get_provider(name: str) -> Provider:
    from .offline import OfflineProvider
    from .openai_compatible import OpenAICompatible

    providers: dict[str, type] = {"offline": OfflineProvider, "openai": OpenAICompatible}
    if name not in providers:
        raise HandlerNotFound(f"no model provider named {name!r}; use one of {', '.join(providers)}")
    return providers[name]()


def price(provider: str, model: str, tokens_in: int, tokens_out: int) -> Decimal:
    """The cost of an answer that did not carry its own, from MODEL_PRICES (USD per million
    input and output tokens, looked up by ``provider:model``, then model, then provider)."""
    prices = ratchet_setting("MODEL_PRICES")
    rate = prices.get(f"{provider}:{model}") or prices.get(model) or prices.get(provider)
    if not rate:
        return Decimal(0)
    per_in, per_out = (Decimal(str(r)) for r in rate)
    return ((per_in * tokens_in + per_out * tokens_out) / Decimal(1_000_000)).quantize(Decimal("0.000001"))
