"""API tokens are stored hashed (no column, no table, no audit entry holds a usable secret), shown
once, and one user's token or session cannot read or change another user's private data: their
API tokens and their saved views of the runs list."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.core.management import call_command
from django.test import Client

from monitoring.models import SavedView
from orchestrator.models import ApiToken

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"rt_[A-Za-z0-9_-]{20,}")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ann(django_user_model):
    return django_user_model.objects.create_superuser("ann", password="pw", email="")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="pw")


def test_a_token_is_shown_once_and_the_database_holds_only_its_hash(ann):
    client = signed_in(ann)
    created = client.post("/account/tokens/", {"name": "ci", "days": "30"})
    assert created.status_code == 200
    secrets_shown = set(SECRET.findall(created.content.decode()))
    assert len(secrets_shown) == 1
    secret = secrets_shown.pop()
    assert Client().get("/api/runs", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200  # the real one

    token = ApiToken.objects.get()
    assert token.hashed == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(token.prefix) and len(token.prefix) <= 10 and len(secret) - len(token.prefix) >= 32
    dump = io.StringIO()
    call_command("dumpdata", exclude=["django_rq"], stdout=dump)  # every table: tokens, audit, sessions, events
    assert secret not in dump.getvalue() and secret[len(token.prefix):] not in dump.getvalue()
    assert secret not in client.get("/account/tokens/").content.decode()  # shown once


def test_one_user_cannot_see_or_revoke_anothers_tokens(ann, bob):
    theirs, _ = ApiToken.issue(bob, "bobs-deploy-key")
    ApiToken.issue(ann, "anns-key")
    page = signed_in(ann).get("/account/tokens/").content.decode()
    assert "anns-key" in page and "bobs-deploy-key" not in page and theirs.prefix not in page
    response = signed_in(ann).post(f"/account/tokens/{theirs.pk}/revoke/")
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active


def test_one_user_cannot_see_or_delete_anothers_saved_views(ann, bob):
    view = SavedView.objects.create(owner=bob, name="bobs-private-view", query="status=failed")
    client = signed_in(ann)
    assert "bobs-private-view" not in client.get("/runs/").content.decode()
    assert client.post(f"/runs/views/{view.pk}/delete").status_code == 404
    assert SavedView.objects.filter(pk=view.pk).exists()


def test_a_bearer_token_opens_only_the_api_never_the_pages_holding_private_data(ann, bob):
    """The pages (tokens, saved views) take the session only: a token sent to them is ignored."""
    theirs, _ = ApiToken.issue(bob, "bobs-deploy-key")
    _, secret = ApiToken.issue(ann, "anns-key")
    bearer = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for url in ("/account/tokens/", "/runs/"):
        response = bearer.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response.url, url
    assert bearer.post(f"/account/tokens/{theirs.pk}/revoke/").status_code in (302, 403)
    theirs.refresh_from_db()
    assert theirs.is_active


def test_no_api_endpoint_shows_another_users_tokens_or_saved_views(ann, bob):
    theirs, their_secret = ApiToken.issue(bob, "bobs-deploy-key")
    SavedView.objects.create(owner=bob, name="bobs-private-view", query="status=failed")
    _, secret = ApiToken.issue(ann, "anns-key")
    bearer = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    schema = bearer.get("/api/schema").json()
    reads = [path for path, operations in schema["paths"].items() if "get" in operations and "{" not in path]
    assert "/api/runs" in reads
    for path in reads:
        body = bearer.get(path).content.decode()
        for private in ("bobs-deploy-key", theirs.prefix, theirs.hashed, their_secret, "bobs-private-view"):
            assert private not in body, (path, private)
