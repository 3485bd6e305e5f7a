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


class InvalidTransition(RatchetError):
    """A status change that the source status does not allow (e.g. cancel a finished run)."""

    code = "R300"


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


class NotSerializable(RatchetError):
    code = "R430"


class Cancelled(BaseException):
    """Raised inside a handler whose attempt is no longer its own (cancelled or taken over).

    A BaseException so that a handler's ``except Exception`` cannot swallow it.
    """


def engine_error(type_name: str, message: str) -> dict[str, Any]:
    """The stored form of an error the engine itself raises (a budget, a timeout, a lost worker),
    in the same shape as a handler's exception so retry and catch rules match it by name."""
    return {"type": type_name, "types": [type_name], "message": message}


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
        "message": str(exc)[:2000],
        "code": getattr(exc, "code", ""),
        "traceback": "".join(frames)[-4000:],
    }
