"""Errors the engine raises or records. Codes are stable: users see them."""

from __future__ import annotations

import traceback
from typing import Any


class RatchetError(Exception):
    code = "R000"


class DefinitionError(RatchetError):
    """A definition failed validation; ``findings`` says where and how to fix it."""

    code = "R100"

    def __init__(self, findings: list[Any]):
        self.findings = findings
        lines = "; ".join(str(f) for f in findings[:5])
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        super().__init__(f"invalid definition: {lines}{more}")


class GuardError(RatchetError):
    code = "R110"


class WorkflowNotFound(RatchetError):
    code = "R200"


class InputInvalid(RatchetError):
    """A run's input breaks its workflow's input schema; ``fields`` maps each faulty field's
    path to what is wrong with it. Nothing was started."""

    code = "R210"

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        listed = "; ".join(f"{path}: {message}" for path, message in list(fields.items())[:5])
        super().__init__(f"the input does not match the workflow's input schema ({listed})")


class InvalidTransition(RatchetError):
    """A status change that the source status does not allow (e.g. cancel a finished run)."""

    code = "R300"


class ApprovalRefused(InvalidTransition):
    """A decision or claim that may not be made: already decided (naming who and when), a
    person not among the approvers, four-eyes, an unknown outcome, an edit not allowed."""

    code = "R310"


class HandlerNotFound(RatchetError):
    code = "R400"


class StepTimeout(RatchetError):
    code = "R410"


class EffectUncertain(RatchetError):
    """An effect's intent was recorded but never confirmed, and retrying it is not safe."""

    code = "R420"

    def __init__(self, key: str):
        self.key = key
        super().__init__(
            f"effect {key!r} was started by an earlier attempt that never confirmed it; "
            "an operator must decide whether it happened"
        )


class EffectKeyClash(RatchetError):
    """One effect key used both as shared across the run and as a step's own."""

    code = "R425"


class EffectNotDone(RatchetError):
    """Raised by an effect function to say the effect definitely did not happen (the
    downstream refused it): the ledger records it as not done, and a retry may run it again.

    Any other exception from a non-idempotent effect leaves its outcome unknown.
    """

    code = "R421"


class NotSerializable(RatchetError):
    """A value the checkpoint cannot store: not JSON, or JSON the database refuses (NaN,
    infinity, a NUL character). The message names the value's path."""

    code = "R430"


class ContractViolation(RatchetError):
    """A state's input or output broke its declared contract (a mapped path missing, a field of
    the wrong type): recorded with failure mode ``context_loss``; the message names the field."""

    code = "R450"


class ModelError(RatchetError):
    """A model provider failed to answer; a retry rule naming ``ModelError`` retries it."""

    code = "R460"


class ModelUnavailable(ModelError):
    """The provider could not be reached, timed out, or answered 429 / 5xx: worth a retry."""

    code = "R461"


class ModelRequestRefused(ModelError):
    """The provider refused the request (4xx other than 429): a retry would be refused too."""

    code = "R462"


class ModelAnswerInvalid(ModelError):
    """The provider's answer is not what the protocol says (no choices, tool arguments that are
    not JSON): the answer is discarded and a retry asks again."""

    code = "R463"


class RouteRefused(RatchetError):
    """An agent picked a next state outside the routes the definition lists for it (or none at
    all): the pick is never followed; the attempt fails, and retry or catch rules apply."""

    code = "R470"


class Cancelled(BaseException):
    """Raised inside a handler whose attempt is no longer its own (cancelled or taken over).

    A BaseException so that a handler's ``except Exception`` cannot swallow it.
    """


# Stable codes of the errors the engine records itself; users see them on runs and attempts.
ENGINE_ERROR_CODES = {
    "Timeout": "R410",
    "EffectUncertain": "R420",
    "NotSerializable": "R430",
    "CheckpointRefused": "R440",
    "BudgetExceeded": "R510",
    "Lost": "R520",
    "Cancelled": "R530",
    "EffectCompensated": "R540",
    "CompensationNotDone": "R550",
    "JoinTimeout": "R620",
    "MapItems": "R630",
    "DepthExceeded": "R640",
    "ChildRunFailed": "R650",
}


def engine_error(type_name: str, message: str) -> dict[str, Any]:
    """The stored form of an error the engine itself raises (a budget, a timeout, a lost worker),
    in the same shape as a handler's exception so retry and catch rules match it by name.
    Errors a definition names itself (a fail state's ``error``) carry the code R600."""
    return {"type": type_name, "types": [type_name], "message": message,
            "code": ENGINE_ERROR_CODES.get(type_name, "R600")}


def error_payload(exc: BaseException, *, name: str | None = None) -> dict[str, Any]:
    """The JSON form of an error stored on attempts and runs and matched by retry/catch.

    ``types`` holds the exception's class and its bases, so a retry rule naming a base
    class matches; ``traceback`` keeps the last frames for whoever debugs the handler.
    """
    names = [cls.__name__ for cls in type(exc).__mro__ if cls not in (object, BaseException)]
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8)
    return {
        "type": name or type(exc).__name__,
        "types": [name] if name else names,
        "message": _storable_text(str(exc))[:2000],
        "code": getattr(exc, "code", ""),
        "traceback": _storable_text("".join(frames))[-4000:],
    }


def _storable_text(text: str) -> str:
    """PostgreSQL's jsonb refuses the NUL character: an error message must never carry one."""
    return text.replace("\x00", "\\x00")
