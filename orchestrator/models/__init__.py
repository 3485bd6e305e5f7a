from .agents import ModelCall
from .approvals import ApprovalRequest, ApprovalStatus
from .audit import AuditAction, AuditEntry
from .context import ContextEntry
from .effects import Effect, EffectStatus
from .events import Event, EventKind
from .lines import Fork, ForkStatus, Line, LineStatus
from .runs import AttemptKind, AttemptStatus, FailureMode, PauseReason, Run, RunStatus, StepAttempt
from .tokens import ApiToken
from .workers import WorkerBeat
from .workflows import Workflow, WorkflowVersion

__all__ = [
    "ApiToken",
    "ApprovalRequest",
    "ApprovalStatus",
    "AttemptKind",
    "AttemptStatus",
    "AuditAction",
    "AuditEntry",
    "ContextEntry",
    "Effect",
    "EffectStatus",
    "Event",
    "EventKind",
    "FailureMode",
    "Fork",
    "ForkStatus",
    "Line",
    "LineStatus",
    "ModelCall",
    "PauseReason",
    "Run",
    "RunStatus",
    "StepAttempt",
    "WorkerBeat",
    "Workflow",
    "WorkflowVersion",
]
