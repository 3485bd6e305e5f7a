"""Following a run by server-sent events: every event once, in order, its id the event's id so
Last-Event-ID resumes; heartbeats while nothing happens; the end once the run is terminal and
every event was sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone

from orchestrator.api.stream import follow
from orchestrator.models import Event, EventKind, Run, RunStatus

from .conftest import bearer, call

pytestmark = pytest.mark.django_db


def add_event(run: Run, kind: str, actor: Any = None) -> Event:
    return Event.objects.create(run=run, kind=kind, state_name="hello", data={"note": "<b>x</b>"}, actor=actor,
                                created_at=timezone.now())


@pytest.fixture
def finished(flow):
    run = Run.objects.create(workflow=flow.workflow, version=flow, status=RunStatus.SUCCEEDED)
    for kind in (EventKind.RUN_STARTED, EventKind.STEP_SUCCEEDED, EventKind.RUN_SUCCEEDED):
        add_event(run, kind)
    return run


def messages(text: str) -> list[dict[str, str]]:
    """The stream's messages (comments and the retry hint left out), each as its fields."""
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            found.append(fields)
    return found


def read(client, path: str, headers: dict[str, str]) -> tuple[Any, str]:
    response = client.get(f"/api{path}", **headers)
    return response, b"".join(response.streaming_content).decode()


def test_a_finished_run_streams_every_event_then_ends(client, user, finished):
    response, text = read(client, f"/runs/{finished.pk}/events/stream", bearer(user("viewer")))
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    *events, end = messages(text)
    ids = list(Event.objects.filter(run=finished).order_by("id").values_list("id", flat=True))
    assert [int(m["id"]) for m in events] == ids
    assert [json.loads(m["data"])["kind"] for m in events] == ["run_started", "step_succeeded", "run_succeeded"]
    assert json.loads(events[0]["data"])["data"] == {"note": "<b>x</b>"}
    assert end["event"] == "end" and json.loads(end["data"]) == {"status": "succeeded", "last_event_id": ids[-1]}


@pytest.mark.parametrize("how", ["header", "query"])
def test_last_event_id_resumes_after_that_event(client, user, finished, how):
    second = Event.objects.filter(run=finished).order_by("id")[1].pk
    headers = bearer(user("viewer"))
    path = f"/runs/{finished.pk}/events/stream"
    if how == "header":
        headers["HTTP_LAST_EVENT_ID"] = str(second)
    else:
        path += f"?after={second}"
    *events, _ = messages(read(client, path, headers)[1])
    assert [json.loads(m["data"])["kind"] for m in events] == ["run_succeeded"]


def test_a_running_run_is_followed_live_with_heartbeats_until_it_ends(flow, user):
    run = Run.objects.create(workflow=flow.workflow, version=flow, status=RunStatus.RUNNING)
    add_event(run, EventKind.RUN_STARTED)
    now = [0.0]
    naps = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:
            now[0] += 16  # quiet for longer than a heartbeat
        elif len(naps) == 2:
            add_event(run, EventKind.RUN_CANCELLED, actor=user("operator", name="otto"))
            Run.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)

    text = "".join(follow(run.pk, 0, poll=0.5, heartbeat=15, clock=lambda: now[0], sleep=sleep))
    assert naps == [0.5, 0.5] and text.count(": heartbeat\n\n") == 1
    assert text.index("run_started") < text.index(": heartbeat") < text.index("run_cancelled")
    *events, end = messages(text)
    assert json.loads(events[-1]["data"])["actor"] == "otto" and json.loads(end["data"])["status"] == "cancelled"


def test_stream_refusals(client, user, finished):
    path = f"/runs/{finished.pk}/events/stream"
    assert call(client, "get", path)[0] == 401
    status, body = call(client, "get", path, bearer(user(None, name="nobody")))
    assert status == 403 and "orchestrator.view_run" in body["message"]
    viewer = bearer(user("viewer", name="vic"))
    status, body = call(client, "get", "/runs/00000000-0000-0000-0000-000000000000/events/stream", viewer)
    assert status == 404 and body["code"] == "run_not_found"
    status, body = call(client, "get", path, {**viewer, "HTTP_LAST_EVENT_ID": "abc"})
    assert status == 422 and body["field"] == "Last-Event-ID"
    status, body = call(client, "get", f"{path}?after=-1", viewer)
    assert status == 422 and body["field"] == "after"
