from .effects import Effect, EffectStatus
from .events import Event, EventKind
from .runs import AttemptKind, AttemptStatus, FailureMode, Run, RunStatus, StepAttempt
from .workflows import Workflow, WorkflowVersion

__all__ = [
    "AttemptKind",
    "AttemptStatus",
    "Effect",
    "EffectStatus",
    "Event",
    "EventKind",
    "FailureMode",
    "Run",
    "RunStatus",
    "StepAttempt",
    "Workflow",
    "WorkflowVersion",
]
