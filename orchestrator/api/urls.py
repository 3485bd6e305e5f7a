"""The API's URLs, open to LoginRequiredMiddleware: the API authenticates on its own (token or
session) and answers 401 in JSON instead of redirecting a program to the sign-in page.

The workflow endpoints (designer/api.py) and the KPI endpoint (monitoring/api.py) belong to
those apps, which register them on the same API when Django starts (their AppConfig.ready), so
the engine's package imports neither."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required

from . import approvals, effects, runs, stream  # noqa: F401 (registers the endpoints)
from .core import api

urls, app_name, namespace = api.urls
for pattern in urls:
    pattern.callback = login_not_required(pattern.callback)

urlpatterns = urls
