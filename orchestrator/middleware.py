"""Request middleware of the web process."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .engine import audit


def client_address(request: HttpRequest | None) -> str | None:
    """The address the request came from (REMOTE_ADDR: behind a proxy, the proxy must set it)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


class AuditAddressMiddleware:
    """Keeps the client's address while the request runs, for the audit entries it records."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = audit.request_address(client_address(request))
        try:
            return self.get_response(request)
        finally:
            audit.reset_address(token)
