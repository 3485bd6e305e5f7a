"""The API object: authentication (token or session), error answers, and permission checks."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer, django_auth

from ..engine.errors import InputInvalid, InvalidTransition, WorkflowNotFound
from ..models import ApiToken


class ApiError(Exception):
    """An answer the API gives on purpose: HTTP status, stable code, what to fix, and the field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


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


def error(request: HttpRequest, status: int, code: str, message: str, field: str | None = None) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
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
