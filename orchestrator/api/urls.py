"""The API's URLs, open to LoginRequiredMiddleware: the API authenticates on its own (token or
session) and answers 401 in JSON instead of redirecting a program to the sign-in page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required

from . import approvals, effects, kpis, runs, stream, workflows  # noqa: F401 (registers the endpoints)
from .core import api

urls, app_name, namespace = api.urls
for pattern in urls:
    pattern.callback = login_not_required(pattern.callback)

urlpatterns = urls
