"""What handler authors import: the registration decorator, the context type, and the
signals an effect function or ``check`` may give the ledger."""

from .engine.context import StepContext
from .engine.effects import NOT_FOUND
from .engine.errors import Cancelled, EffectNotDone
from .engine.registry import handler, reducer

__all__ = ["NOT_FOUND", "Cancelled", "EffectNotDone", "StepContext", "handler", "reducer"]
