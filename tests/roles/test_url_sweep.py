"""Every page and htmx endpoint checks permissions on the server. The URL patterns are read
from the resolver, so a view added later without a check fails here: a signed-in person with
no role is refused everything but a short list, and a viewer may post to nothing that changes
shared state. (The JSON API, the admin site and django-rq have checks of their own.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter, PathConverter, SlugConverter, StringConverter, UUIDConverter

pytestmark = pytest.mark.django_db

SKIPPED_NAMESPACES = {"api", "admin", "djangorq", "django_rq"}
SKIPPED_PREFIXES = ("api/", "admin/", "django-rq/")

# Open to anyone (LoginRequiredMiddleware lets them through): signing in, and /metrics, which
# checks its own token or staff session.
PUBLIC = {"login", "metrics"}

# What a signed-in person with no role may still use, and why.
NO_ROLE_ALLOWED = {
    "logout": "signing out",
    "api_tokens": "everyone manages their own API tokens (and only those)",
    "api_token_revoke": "revoking one's own token; another person's is not found (404)",
    "monitoring:approvals": "the inbox lists only what the person may decide (often nothing)",
    "monitoring:approvals_badge": "the count of what the person may decide",
    "monitoring:decide_approval": "the engine decides who may, per request (the definition's approvers)",
    "monitoring:claim_approval": "the engine decides who may, per request",
    "monitoring:decide_approvals": "each request is decided by the engine, which checks who may",
}

# Posts a viewer may make: they change nothing others share.
VIEWER_MAY_POST = {
    "logout": "signing out",
    "api_tokens": "creating one's own API token",
    "api_token_revoke": "revoking one's own API token",
    "monitoring:save_view": "a saved view of the runs list is the person's own",
    "monitoring:delete_view": "deleting one's own saved view",
    "monitoring:decide_approval": "refused by the engine unless the definition lets the person decide",
    "monitoring:claim_approval": "refused by the engine unless the person may decide",
    "monitoring:decide_approvals": "each request refused by the engine unless the person may decide",
    "designer:dry_run": "a dry run runs nothing and saves nothing",
    "designer:set_stub": "a dry run's stub lives in the person's session",
    "designer:copy_state": "the clipboard lives in the person's session",
}

SAMPLE_VALUES = {IntConverter: 987654, UUIDConverter: uuid.UUID(int=7), SlugConverter: "no-such-thing",
                 StringConverter: "no_such_thing", PathConverter: "no/such/thing"}


def patterns(resolver: URLResolver | None = None, namespace: str = "", prefix: str = "",
             converters: dict | None = None) -> Iterator[tuple[str, dict]]:
    """(name with its namespace, its parameters' converters) of every URL pattern outside the
    skipped parts."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        found = {**(converters or {}), **getattr(entry.pattern, "converters", {})}
        if route.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(entry, URLResolver):
            if entry.namespace in SKIPPED_NAMESPACES:
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from patterns(entry, inner, route, found)
        elif isinstance(entry, URLPattern):
            assert entry.name, f"the URL {route!r} has no name: name it, so that this sweep can reach it"
            yield namespace + entry.name, found


PATTERNS = dict(patterns())
NAMES = sorted(PATTERNS)


def address(name: str) -> str:
    """The URL of pattern ``name`` with a made-up value for each of its parameters."""
    return reverse(name, kwargs={key: SAMPLE_VALUES[type(converter)] for key, converter in PATTERNS[name].items()})


def test_the_sweep_sees_every_part_of_the_site():
    assert len(NAMES) > 40
    for name in ("monitoring:run_detail", "monitoring:cancel_run", "designer:publish", "api_tokens",
                 "monitoring:audit", "monitoring:reset_breaker"):
        assert name in NAMES
    assert set(NO_ROLE_ALLOWED) <= set(NAMES) and set(VIEWER_MAY_POST) <= set(NAMES)


@pytest.mark.parametrize("name", [name for name in NAMES if name not in PUBLIC])
def test_an_anonymous_visitor_is_sent_to_sign_in(client, name):
    url = address(name)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), name


@pytest.mark.parametrize("name", [name for name in NAMES if name not in PUBLIC | set(NO_ROLE_ALLOWED)])
def test_a_person_with_no_role_is_refused(signed_in, name):
    client: Client = signed_in("nobody")
    url = address(name)
    assert client.post(url).status_code == 403, f"POST {name} ({url})"
    assert client.get(url).status_code in (403, 405), f"GET {name} ({url})"  # 405: a post-only view


@pytest.mark.parametrize("name", [name for name in NAMES if name not in PUBLIC | set(VIEWER_MAY_POST)])
def test_a_viewer_may_post_to_nothing_that_changes_shared_state(signed_in, name):
    client: Client = signed_in("vera", "viewer")
    url = address(name)
    assert client.post(url).status_code in (403, 405), f"POST {name} ({url})"


@pytest.mark.parametrize("name", [name for name in NAMES if name not in PUBLIC | {"logout"}])
def test_the_admin_role_passes_every_check(signed_in, redis_conn, name):
    client: Client = signed_in("root", "admin")
    url = address(name)
    # Made-up ids give 404s, empty forms 400s or redirects; never a refusal.
    assert client.get(url).status_code != 403, f"GET {name} ({url})"
    assert client.post(url).status_code != 403, f"POST {name} ({url})"


# Pages beyond the viewer's reach, though they only read.
VIEWER_MAY_NOT_READ = {"monitoring:audit": "the audit trail is for admins"}


@pytest.mark.parametrize("name", [name for name in NAMES if name not in PUBLIC | {"logout"}])
def test_a_viewer_may_read_every_page_but_the_audit_trail(signed_in, redis_conn, name):
    url = address(name)
    if signed_in("root", "admin").get(url).status_code == 405:
        return  # an action (post only), not a page
    refused = signed_in("vera", "viewer").get(url).status_code == 403
    assert refused == (name in VIEWER_MAY_NOT_READ), f"GET {name}"
