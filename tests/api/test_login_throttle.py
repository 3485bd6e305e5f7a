"""Sign-in throttling: after five failed sign-ins for one account from one address, even the right
password is refused for a while, with how long to wait; another account or address is not
affected; a success clears the count."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create_user("ada", password="right-horse")


def sign_in(client, password, username="ada", address="10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_failures_lock_the_account_from_that_address_only(client, ada, redis_conn):
    for _ in range(5):
        assert sign_in(client, "wrong").status_code == 200  # the form again, with its error
    refused = sign_in(client, "right-horse")
    assert refused.status_code == 200 and "Too many failed sign-ins" in refused.content.decode()
    assert "Try again in 15 minutes" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    assert sign_in(client, "right-horse", address="10.0.0.2").status_code == 302  # another address


def test_a_success_clears_the_count(client, ada, redis_conn):
    for _ in range(4):
        sign_in(client, "wrong")
    assert sign_in(client, "right-horse").status_code == 302
    client.logout()
    for _ in range(4):
        sign_in(client, "wrong")
    assert sign_in(client, "right-horse").status_code == 302  # four new failures, not eight


def test_without_redis_sign_ins_are_not_throttled(client, ada, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    for _ in range(6):
        sign_in(client, "wrong")
    assert sign_in(client, "right-horse").status_code == 302
