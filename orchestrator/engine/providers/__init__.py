"""Model providers behind one interface: an agent state asks ``get_provider(name).complete(request)``.

- ``openai``: any server speaking OpenAI's chat completions protocol (hosted or local);
- ``offline``: deterministic models written in Python, for demos and tests (no network).
"""

from __future__ import annotations

from .base import ModelAnswer, ModelRequest, Provider, ToolCall, get_provider, price
from .offline import offline_model

__all__ = ["ModelAnswer", "ModelRequest", "Provider", "ToolCall", "get_provider", "offline_model", "price"]
