"""CSRF: every URL that takes a POST refuses one without the token, as a form post and as an htmx
request, even from a signed-in superuser; the same post with the token gets past the check.
No view is exempt except the JSON API's, which checks the token itself for session
authentication (a bearer token is not sent by the browser on its own, so it needs none)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter, UUIDConverter

from orchestrator.models import ApiToken

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
CSRF_FAILURE = b"CSRF verification failed"


def patterns(resolvers: list, namespace: str = "") -> Iterator[tuple[str, URLPattern, dict]]:
    """Every URL pattern with its namespace and the converters of its route (regex routes: none)."""
    for entry in resolvers:
        converters = dict(getattr(entry.pattern, "converters", {}))
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            for found in patterns(entry.url_patterns, inner.strip(":")):
                yield found[0], found[1], {**converters, **found[2]}
        else:
            yield namespace, entry, converters


def own_urls() -> list[tuple[str, str]]:
    """(name, path) of every URL of the project outside the admin, django-rq and the API, its
    parameters filled with samples: the check comes before the view, so nothing need exist."""
    found = []
    for namespace, entry, converters in patterns(get_resolver().url_patterns):
        if namespace.split(":")[0] in ("admin", "django_rq", "api"):
            continue
        name = f"{namespace}:{entry.name}" if namespace else entry.name
        found.append((name, reverse(name, kwargs={key: _sample(value) for key, value in converters.items()})))
    return found


def _sample(converter: object) -> object:
    if isinstance(converter, IntConverter):
        return 999999
    if isinstance(converter, UUIDConverter):
        return uuid.UUID(int=1)
    return "sample"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("ops", password="pw", email="")


def signed_in(user, enforce: bool = True) -> Client:
    client = Client(enforce_csrf_checks=enforce)
    client.force_login(user)
    return client


def refused_for_csrf(response) -> bool:
    return response.status_code == 403 and CSRF_FAILURE in response.content


def csrf_token(client: Client) -> str:
    client.get("/")  # the pages set the CSRF cookie (base.html sends it with every htmx request)
    return client.cookies["csrftoken"].value


def test_no_view_outside_the_api_is_exempt_from_csrf():
    exempt = [f"{namespace}:{entry.name}" for namespace, entry, _ in patterns(get_resolver().url_patterns)
              if getattr(entry.callback, "csrf_exempt", False) and not namespace.startswith("api")]
    assert exempt == []


def test_the_sweep_covers_the_pages_and_actions():
    names = {name for name, _ in own_urls()}
    assert {"monitoring:start_run", "monitoring:cancel_run", "monitoring:decide_approval", "designer:save_state",
            "designer:publish", "api_tokens", "api_token_revoke", "logout", "login"} <= names
    assert len(names) >= 40


@pytest.mark.parametrize("htmx", [False, True], ids=["form post", "htmx request"])
def test_every_post_without_the_csrf_token_is_refused(superuser, htmx):
    client = signed_in(superuser)
    headers = HTMX if htmx else {}
    accepted = [(name, path) for name, path in own_urls() if not refused_for_csrf(client.post(path, {}, **headers))]
    assert accepted == [], f"answered a POST without a CSRF token: {accepted}"


def test_every_post_with_the_csrf_token_gets_past_the_check(superuser):
    """So the refusals above are the CSRF check's, not something else's."""
    refused = []
    for name, path in own_urls():
        client = signed_in(superuser)
        token = csrf_token(client)
        response = client.post(path, {}, HTTP_X_CSRFTOKEN=token, **HTMX)
        if refused_for_csrf(response):
            refused.append(name)
    assert refused == []


def test_a_wrong_csrf_token_is_refused(superuser):
    client = signed_in(superuser)
    csrf_token(client)
    response = client.post("/account/tokens/", {"name": "ci"}, HTTP_X_CSRFTOKEN="x" * 32)
    assert response.status_code == 403 and not ApiToken.objects.exists()


# --- the JSON API --------------------------------------------------------------------------------------------


def api_writes(client: Client) -> list[tuple[str, str]]:
    """(method, path) of every API operation that changes something, from its own OpenAPI
    document, its path parameters filled with samples (the check comes before any lookup)."""
    schema = client.get("/api/schema").json()
    sample = {"run_id": str(uuid.UUID(int=1))}
    return [(method, re.sub(r"\{(\w+)\}", lambda m: sample.get(m.group(1), "999999"), path))
            for path, operations in schema["paths"].items()
            for method in operations if method in ("post", "put", "patch", "delete")]


def test_a_session_authenticated_api_write_needs_the_csrf_token(superuser):
    client = signed_in(superuser)
    writes = api_writes(client)
    assert ("post", "/api/runs") in writes and len(writes) >= 5
    for method, path in writes:
        response = getattr(client, method)(path, "{}", content_type="application/json")
        assert response.status_code == 403 and "CSRF" in response.content.decode(), (method, path, response.content)


def test_a_session_authenticated_api_write_with_the_token_gets_past_the_check(superuser):
    client = signed_in(superuser)
    token = csrf_token(client)
    for method, path in api_writes(client):
        response = getattr(client, method)(path, "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert not (response.status_code == 403 and "CSRF" in response.content.decode()), (method, path)


def test_an_api_write_with_a_bearer_token_needs_no_csrf_token(superuser):
    _, secret = ApiToken.issue(superuser, "ci")
    client = Client(enforce_csrf_checks=True)
    for method, path in api_writes(signed_in(superuser)):
        response = getattr(client, method)(path, "{}", content_type="application/json",
                                           HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert response.status_code != 401 and not (
            response.status_code == 403 and "CSRF" in response.content.decode()), (method, path)
