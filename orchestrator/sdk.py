"""What handler authors import: the registration decorator and the context type."""

from .engine.context import StepContext
from .engine.errors import Cancelled
from .engine.registry import handler

__all__ = ["Cancelled", "StepContext", "handler"]
