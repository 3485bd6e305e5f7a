"""Offline models: deterministic functions that answer like a model, for demos and tests.

    @offline_model("triage")
    def triage(request: ModelRequest) -> ModelAnswer:
        ...

Token counts are words (deterministic, so budgets behave the same on every run); the cost
comes from MODEL_PRICES like any answer that carries none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import HandlerNotFound
from .base import ModelAnswer, ModelRequest, ToolCall

OfflineModel = Callable[[ModelRequest], ModelAnswer]
_MODELS: dict[str, OfflineModel] = {}


def offline_model(name: str) -> Callable[[OfflineModel], OfflineModel]:
    def register(fn: OfflineModel) -> OfflineModel:
        _MODELS[name] = fn
        return fn

    return register


def offline_model_names() -> set[str]:
    return set(_MODELS)


def words(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return len(text.split())


def answer(request: ModelRequest, content: str | None = None,
           tool_calls: list[tuple[str, dict[str, Any]]] | None = None) -> ModelAnswer:
    """An answer with deterministic ids and token counts (helper for offline models)."""
    turn = sum(1 for m in request.messages if m.get("role") == "assistant")
    calls = tuple(ToolCall(f"call_{turn}_{i}", name, args) for i, (name, args) in enumerate(tool_calls or []))
    return ModelAnswer(
        content=content, tool_calls=calls,
        tokens_in=sum(words(m.get("content") or "") for m in request.messages),
        tokens_out=words(content or "") + sum(words(c.arguments) + 1 for c in calls),
        model=request.model,
    )


class OfflineProvider:
    name = "offline"

    def default_model(self) -> str:
        return "echo"

    def complete(self, request: ModelRequest) -> ModelAnswer:
        model = _MODELS.get(request.model)
        if model is None:
            known = ", ".join(sorted(_MODELS)) or "none registered"
            raise HandlerNotFound(f"no offline model named {request.model!r} ({known})")
        return model(request)


@offline_model("echo")
def echo(request: ModelRequest) -> ModelAnswer:
    """Answers with the last user message: the default offline model."""
    last = next((m.get("content") for m in reversed(request.messages) if m.get("role") == "user"), "")
    return answer(request, content=last)
