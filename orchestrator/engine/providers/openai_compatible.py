"""A client of OpenAI's chat completions protocol, for hosted and local servers alike.

httpx and one POST, rather than the ``openai`` SDK: the engine needs one endpoint, and the
SDK's own retries would stack on the state's retry policy (which must stay the one place a
step is retried, so budgets and the history see every try).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from ...conf import ratchet_setting
from ..errors import ModelAnswerInvalid, ModelRequestRefused, ModelUnavailable
from .base import ModelAnswer, ModelRequest, ToolCall


class OpenAICompatible:
    name = "openai"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float | None = None):
        self.base_url = (base_url or ratchet_setting("OPENAI_BASE_URL")).rstrip("/")
        self.api_key = ratchet_setting("OPENAI_API_KEY") if api_key is None else api_key
        self.timeout = timeout or ratchet_setting("MODEL_TIMEOUT_SECONDS")

    def default_model(self) -> str:
        return ratchet_setting("OPENAI_MODEL")

    def complete(self, request: ModelRequest) -> ModelAnswer:
        body: dict[str, Any] = {"model": request.model, "messages": request.messages}
        if request.tools:
            body["tools"] = request.tools
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise ModelUnavailable(f"{url} answered {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise ModelRequestRefused(f"{url} answered {response.status_code}: {response.text[:500]}")
        try:
            return parse_answer(response.json(), request.model)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelAnswerInvalid(f"{url} answered something that is not a chat completion: {exc}") from exc


def parse_answer(data: dict[str, Any], requested_model: str) -> ModelAnswer:
    """A chat completion's first choice, its tool calls (arguments parsed) and its usage."""
    message = data["choices"][0]["message"]
    calls = []
    for raw in message.get("tool_calls") or []:
        function = raw["function"]
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError as exc:
            raise ModelAnswerInvalid(
                f"tool call {function.get('name')!r} has arguments that are not JSON: {exc}") from exc
        if not isinstance(arguments, dict):
            raise ModelAnswerInvalid(f"tool call {function.get('name')!r} has arguments that are not an object")
        calls.append(ToolCall(str(raw.get("id") or f"call_{len(calls)}"), str(function["name"]), arguments))
    usage = data.get("usage") or {}
    cost = usage.get("cost")  # OpenRouter and LiteLLM report it; OpenAI does not
    return ModelAnswer(
        content=message.get("content"),
        tool_calls=tuple(calls),
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
        cost=Decimal(str(cost)) if cost is not None else None,
        model=str(data.get("model") or requested_model),
    )
