"""The handler registry: ``@handler("name")`` registers a step handler by name.

Handlers are discovered from installed apps: each app's ``handlers`` module is imported
when Django starts, the way the admin discovers ``admin`` modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import autodiscover_modules

from .errors import HandlerNotFound

HandlerFn = Callable[[Any], Any]
_HANDLERS: dict[str, HandlerFn] = {}


def handler(name: str) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``fn(ctx) -> output`` as the handler called by task states naming ``name``."""

    def register(fn: HandlerFn) -> HandlerFn:
        existing = _HANDLERS.get(name)
        if existing is not None and existing.__qualname__ != fn.__qualname__:
            raise ValueError(f"handler name {name!r} is already registered by {existing.__module__}")
        _HANDLERS[name] = fn
        return fn

    return register


def get_handler(name: str) -> HandlerFn:
    try:
        return _HANDLERS[name]
    except KeyError:
        raise HandlerNotFound(f"no handler is registered under {name!r}") from None


def handler_names() -> set[str]:
    return set(_HANDLERS)


ReducerFn = Callable[[dict[str, Any]], Any]
_REDUCERS: dict[str, ReducerFn] = {}


def reducer(name: str) -> Callable[[ReducerFn], ReducerFn]:
    """Register ``fn(outputs) -> merged`` as a custom reducer of parallel states. ``outputs``
    maps each joined branch's name to its output, in the order of the branch names."""

    def register(fn: ReducerFn) -> ReducerFn:
        existing = _REDUCERS.get(name)
        if existing is not None and existing.__qualname__ != fn.__qualname__:
            raise ValueError(f"reducer name {name!r} is already registered by {existing.__module__}")
        _REDUCERS[name] = fn
        return fn

    return register


def get_reducer(name: str) -> ReducerFn:
    try:
        return _REDUCERS[name]
    except KeyError:
        raise HandlerNotFound(f"no reducer is registered under {name!r}") from None


def reducer_names() -> set[str]:
    return set(_REDUCERS)


@dataclass(frozen=True)
class Tool:
    """A function an agent may call: ``fn(ctx, arguments) -> JSON``, with the JSON Schema of its
    arguments (the model sees it; the engine checks the model's arguments against it)."""

    name: str
    fn: Callable[[Any, dict[str, Any]], Any]
    description: str
    parameters: dict[str, Any]

    def spec(self) -> dict[str, Any]:
        """The tool as OpenAI's chat completions protocol declares it."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


_TOOLS: dict[str, Tool] = {}


def tool(name: str, parameters: dict[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, arguments)`` as a tool agent states may list; its docstring is the
    description the model reads. A tool with a side effect does it through ``ctx.effect``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        existing = _TOOLS.get(name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"tool name {name!r} is already registered by {existing.fn.__module__}")
        description = " ".join((fn.__doc__ or name).split())
        _TOOLS[name] = Tool(name, fn, description, parameters or {"type": "object", "properties": {}})
        return fn

    return register


def get_tool(name: str) -> Tool | None:
    return _TOOLS.get(name)


def tool_names() -> set[str]:
    return set(_TOOLS)


def autodiscover() -> None:
    autodiscover_modules("handlers")
