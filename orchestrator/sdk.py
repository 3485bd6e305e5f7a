"""What handler authors import: the registration decorators (handlers, reducers, agent tools,
offline models), the context type, and the signals an effect function or ``check`` may give
the ledger."""

from .engine.context import StepContext
from .engine.effects import NOT_FOUND
from .engine.errors import Cancelled, EffectNotDone
from .engine.providers import ModelAnswer, ModelRequest, offline_model
from .engine.providers.offline import answer
from .engine.registry import handler, reducer, tool

__all__ = [
    "NOT_FOUND", "Cancelled", "EffectNotDone", "ModelAnswer", "ModelRequest", "StepContext", "answer", "handler",
    "offline_model", "reducer", "tool",
]
