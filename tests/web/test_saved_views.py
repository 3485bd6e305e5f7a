"""Named saved views of the runs list: each user's own, saved, replaced under the same name,
deleted; bad names and filters refused; and the list's query count does not grow with runs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitoring.models import SavedView
from orchestrator.engine.runs import start_run
from orchestrator.roles import ensure_role_groups

from ..workflows import ORDER

pytestmark = pytest.mark.django_db(transaction=True)


def save(client, name: str, **query: str):
    return client.post(reverse("monitoring:save_view"), {"name": name, **query}, follow=True)


def test_a_user_saves_a_filter_under_a_name_and_finds_it_on_the_list(viewer):
    response = save(viewer, "  Failed   today ", status="failed", window="24h")
    assert "View &#x27;Failed today&#x27; saved." in response.content.decode()
    view = SavedView.objects.get()
    assert (view.owner.username, view.name, view.query) == ("vera", "Failed today", "status=failed&window=24h")
    text = viewer.get(reverse("monitoring:run_list")).content.decode()
    assert '<a href="/runs/?status=failed&amp;window=24h">Failed today</a>' in text
    current = viewer.get(reverse("monitoring:run_list"), {"status": "failed", "window": "24h"}).content.decode()
    assert 'aria-current="true">Failed today</a>' in current


def test_saving_under_a_name_already_used_replaces_that_view(viewer):
    save(viewer, "mine", status="failed")
    response = save(viewer, "mine", status="running")
    assert "View &#x27;mine&#x27; updated." in response.content.decode()
    assert list(SavedView.objects.values_list("name", "query")) == [("mine", "status=running")]


def test_views_belong_to_their_owner(viewer, django_user_model, client):
    save(viewer, "vera's view", status="failed")
    other = django_user_model.objects.create_user("olga", password="pw")
    other.groups.add(ensure_role_groups()["viewer"])
    client.force_login(other)
    assert "vera&#x27;s view" not in client.get(reverse("monitoring:run_list")).content.decode()
    view = SavedView.objects.get()
    assert client.post(reverse("monitoring:delete_view", args=[view.pk])).status_code == 404
    assert SavedView.objects.filter(pk=view.pk).exists()


def test_a_user_deletes_their_view(viewer):
    save(viewer, "old", status="failed")
    response = viewer.post(reverse("monitoring:delete_view", args=[SavedView.objects.get().pk]), follow=True)
    assert "View &#x27;old&#x27; deleted." in response.content.decode() and not SavedView.objects.exists()


@pytest.mark.parametrize(("name", "query", "message"), [
    ("", {"status": "failed"}, "Give the view a name."),
    ("x" * 81, {"status": "failed"}, "at most 80 characters"),
    ("nothing", {}, "Choose a valid filter before saving it"),
    ("bad", {"status": "exploded"}, "Choose a valid filter before saving it"),
])
def test_bad_names_and_filters_are_refused_with_a_reason(viewer, name, query, message):
    assert message in save(viewer, name, **query).content.decode()
    assert not SavedView.objects.exists()


def test_saving_and_deleting_need_login(client):
    assert client.post(reverse("monitoring:save_view"), {"name": "x", "status": "failed"}).status_code == 302
    assert not SavedView.objects.exists()


def test_the_runs_list_costs_the_same_queries_for_five_runs_as_for_thirty(operator, demos):
    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(reverse("monitoring:run_list"), {"workflow": "order_fulfilment"}).status_code == 200
        return len(queries)

    for i in range(5):
        start_run("order_fulfilment", {**ORDER, "order_id": f"Q-{i}"})
    few = cost()
    for i in range(25):
        start_run("order_fulfilment", {**ORDER, "order_id": f"R-{i}"})
    assert cost() == few == 10, few  # session, user, permissions, runs, states, workflows, views, bulk, count
