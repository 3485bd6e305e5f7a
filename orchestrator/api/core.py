"""The API object: authentication (token or session), error answers, and permission checks."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, django_auth

from ..engine.errors import InputInvalid, InvalidTransition, NotSerializable, WorkflowNotFound
from ..models import ApiToken


class ApiError(Exception):
    """An answer the API gives on purpose: HTTP status, stable code, what to fix, and the field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class FieldErrorOut(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    """Every refusal: a stable ``code``, a ``message`` that says what to fix, the ``field`` at fault."""

    code: str = Field(description="stable: programs branch on it (forbidden, run_not_found, stale_revision, ...)")
    message: str = Field(description="what went wrong and what to do about it, in words")
    field: str | None = Field(default=None, description="the request field at fault, when one is")
    line: int | None = Field(default=None, description="the line (1-based) of a definition's source at fault")
    column: int | None = Field(default=None, description="the column (1-based) at fault, when known")
    errors: list[FieldErrorOut] | None = Field(default=None, description="each invalid field, for 422 answers")
    findings: list[dict[str, Any]] | None = Field(default=None, description="the validator's findings, when "
                                                                            "a definition is refused")


def refusals(*statuses: int) -> dict[int, type[ErrorOut]]:
    """The error answers an endpoint may give, for its ``response=`` (so the OpenAPI document lists
    them): always 401, 403 and 422; for those that take a body, 400 (not JSON) and 413 (too large)."""
    return {status: ErrorOut for status in (401, 403, 422, *statuses)}


def encode_cursor(*parts: Any) -> str:
    """An opaque cursor: where the next page starts (the sort key of the last item sent)."""
    return base64.urlsafe_b64encode(json.dumps(parts, default=str).encode()).decode()


def decode_cursor(text: str, count: int) -> list[Any]:
    """The ``count`` parts of a cursor this API gave; 422 (field ``cursor``) for anything else."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(text.encode()).decode())
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid", "cursor is not one this API gave; start again without it", "cursor") from exc
    if not isinstance(parts, list) or len(parts) != count:
        raise ApiError(422, "invalid", "cursor is not one this API gave; start again without it", "cursor")
    return parts


class TokenAuth(HttpBearer):
    """``Authorization: Bearer rt_...``: a user's API token, active (not revoked nor expired)."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = ApiToken.user_for(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="Ratchet API", version="1", urls_namespace="api", auth=[TokenAuth(), django_auth],
    openapi_url="/schema", docs_url="/docs",
    description="Start, follow and act on durable workflow runs. Authenticate with the session of the "
                "browser, or with `Authorization: Bearer <token>` (create tokens on your API tokens page).",
)


def error(request: HttpRequest, status: int, code: str, message: str, field: str | None = None,
          **extra: Any) -> HttpResponse:
    """A JSON refusal; ``extra`` adds the optional members of ErrorOut (line, column, findings)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    body.update({key: value for key, value in extra.items() if value is not None})
    return api.create_response(request, body, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error(request, exc.status, exc.code, exc.message, exc.field)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "payload", "query", "path")]
    field = ".".join(location) or None
    message = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg", "invalid request"))
    return api.create_response(request, {"code": "invalid", "message": message, "field": field,
                                         "errors": [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]),
                                                     "message": e.get("msg", "")} for e in exc.errors]},
                               status=422)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Django Ninja's own refusals; the one a client meets is a body that is not JSON (400)."""
    if exc.status_code == 400:
        return error(request, 400, "invalid_json", "the request body does not parse: send a JSON object with "
                     "'Content-Type: application/json'", "body")
    return error(request, exc.status_code, "error", str(exc.message))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error(request, 413, "too_large", "the request body is larger than this server accepts "
                 "(DATA_UPLOAD_MAX_MEMORY_SIZE); send a smaller document", "body")


@api.exception_handler(NotSerializable)
def _not_storable(request: HttpRequest, exc: NotSerializable) -> HttpResponse:
    return error(request, 422, "not_storable", str(exc))


def _nul(request: HttpRequest, exc: Exception) -> HttpResponse:
    """PostgreSQL refuses text holding NUL (psycopg raises ValueError or DataError, saying so): a
    name or filter with one cannot match anything, so it is the caller's input to fix."""
    if "NUL (0x00)" not in str(exc):
        raise exc
    return error(request, 422, "invalid", "text in this request holds a NUL character (\\u0000); remove it")


api.add_exception_handler(ValueError, _nul)
api.add_exception_handler(DataError, _nul)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error(request, 401, "unauthenticated",
                 "sign in, or send 'Authorization: Bearer <token>' with an active API token")


@api.exception_handler(WorkflowNotFound)
def _no_workflow(request: HttpRequest, exc: WorkflowNotFound) -> HttpResponse:
    return error(request, 404, "workflow_not_found", str(exc), "workflow")


@api.exception_handler(InvalidTransition)
def _invalid_transition(request: HttpRequest, exc: InvalidTransition) -> HttpResponse:
    return error(request, 409, "invalid_transition", str(exc))


@api.exception_handler(InputInvalid)
def _bad_input(request: HttpRequest, exc: InputInvalid) -> HttpResponse:
    fields = dict(getattr(exc, "fields", {}) or {})
    first = next(iter(fields), None)
    return api.create_response(request, {
        "code": "invalid_input", "message": str(exc), "field": f"input.{first}" if first else "input",
        "errors": [{"field": f"input.{name}", "message": message} for name, message in fields.items()]},
        status=422)


def require(request: HttpRequest, permission: str) -> None:
    """Refuse (403) a caller without ``permission``: every state change checks its own."""
    if not request.user.has_perm(permission):
        raise ApiError(403, "forbidden", f"this needs the permission {permission}; ask an administrator "
                                         "for the role that has it")
