"""Every page needs login; the admin shows workflows and their history, read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orchestrator.engine.runs import start_run
from orchestrator.models import Event, Run, StepAttempt, WorkflowVersion

from ..workflows import ORDER

pytestmark = pytest.mark.django_db

HISTORY = ["workflowversion", "run", "stepattempt", "event", "effect"]


@pytest.fixture
def started_run(redis_conn):
    from django.core.management import call_command

    call_command("load_demo", stdout=open("/dev/null", "w"))
    return start_run("order_fulfilment", ORDER)[0]


@pytest.mark.parametrize("url", ["/", "/admin/", "/admin/orchestrator/run/", "/django-rq/"])
def test_pages_require_login(client, url):
    response = client.get(url, follow=True)
    assert response.redirect_chain, url
    assert "/login/" in response.redirect_chain[-1][0]


def test_the_admin_stays_for_raw_data_and_is_linked_for_staff(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 200 and reverse("admin:index").encode() in response.content


@pytest.mark.parametrize("model", ["workflow", *HISTORY])
def test_admin_lists_every_engine_model(admin_client, started_run, model):
    response = admin_client.get(reverse(f"admin:orchestrator_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("model", HISTORY)
def test_history_cannot_be_added_or_deleted_in_the_admin(admin_client, started_run, model):
    assert admin_client.get(reverse(f"admin:orchestrator_{model}_add")).status_code == 403


def test_run_detail_shows_its_attempts_without_editable_fields(admin_client, started_run):
    response = admin_client.get(reverse("admin:orchestrator_run_change", args=[started_run.pk]))
    assert response.status_code == 200
    assert b"validate" in response.content
    assert b'name="status"' not in response.content


def test_admin_cancel_action_goes_through_the_engine(admin_client, started_run):
    response = admin_client.post(reverse("admin:orchestrator_run_changelist"),
                                 {"action": "cancel_selected", "_selected_action": [str(started_run.pk)]})
    assert response.status_code == 302
    started_run.refresh_from_db()
    assert started_run.status == "cancelled"
    assert Event.objects.filter(run=started_run, kind="run_cancelled", actor__username="admin").exists()
    assert not StepAttempt.objects.filter(run=started_run, status="scheduled").exists()


def test_versions_and_events_refuse_changes_outside_the_admin(started_run):
    version = WorkflowVersion.objects.first()
    with pytest.raises(Exception, match="cannot change"):
        version.save()
    event = Event.objects.filter(run=started_run).first()
    with pytest.raises(Exception, match="append-only"):
        event.save()
    assert Run.objects.count() == 1
