"""Times in the user's own time zone.

static/js/ratchet.js stores the browser's zone (``Intl.DateTimeFormat().resolvedOptions().timeZone``)
in the ``ratchet_tz`` cookie; this middleware activates it for the request, so every template
that formats a time (``|date``, ``|time``, ``{% now %}``) shows it in that zone. A cookie that
names no real zone is ignored (the site's zone, UTC, is used): it is only a display preference.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "ratchet_tz"
# IANA names: letters, digits and "/_+-" (Etc/GMT+3), at most a few dozen characters.
_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
MAX_LENGTH = 64


@lru_cache(maxsize=512)
def zone_named(name: str) -> ZoneInfo | None:
    """The zone called ``name``, or None when no such zone exists (or the name is malformed)."""
    name = unquote(name).strip()
    if not name or len(name) > MAX_LENGTH or not _NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # KeyError: ZoneInfoNotFoundError; OSError: a directory
        return None


class TimezoneMiddleware:
    """Activates the zone named in the ``ratchet_tz`` cookie for one request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = zone_named(request.COOKIES.get(COOKIE, "")[:MAX_LENGTH * 3])
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
