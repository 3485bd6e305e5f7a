"""A run's events as server-sent events, for programs that follow a run without polling the API.

``GET /api/runs/{id}/events/stream`` answers ``text/event-stream``: one message per event, oldest
first, its ``id:`` the event's id, so a client that reconnects with ``Last-Event-ID`` (browsers'
EventSource do it by themselves) gets what it missed and nothing twice. A comment line is sent
every HEARTBEAT_SECONDS while nothing happens, so proxies keep the connection open. When the run
is terminal and every event was sent, an ``end`` message says its status and the stream ends.

The generator polls the events table (every POLL_SECONDS): the database is the source of truth,
and no other channel is needed. Each open stream holds its web worker: under gunicorn's sync
workers a stream takes a whole worker for as long as it lasts, so serve streams from threaded
workers (``--worker-class gthread --threads N``) or a separate pool sized for the followers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Header, Query

from ..models import Event, Run
from ..models.runs import TERMINAL_RUN_STATUSES
from .core import ApiError, api, refusals, require

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
BATCH = 200


def _frame(event: Event) -> str:
    data = {"id": event.pk, "kind": event.kind, "state": event.state_name, "created_at": event.created_at,
            "actor": event.actor.get_username() if event.actor else None, "data": event.data}
    return f"id: {event.pk}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


def follow(run_id: Any, after: int = 0, *, poll: float | None = None, heartbeat: float | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """The stream's text: the run's events after event ``after``, then the ones that come, until
    the run is terminal and all of them were sent."""
    poll = POLL_SECONDS if poll is None else poll
    heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
    yield "retry: 2000\n\n"  # how long a client waits before it reconnects
    quiet_since = clock()
    while True:
        # The status first: an event written with the terminal status is then found by the query below.
        status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
        batch = list(Event.objects.filter(run_id=run_id, pk__gt=after).select_related("actor").order_by("pk")[:BATCH])
        for event in batch:
            yield _frame(event)
            after = event.pk
        if batch:
            quiet_since = clock()
            continue
        if status is None or status in TERMINAL_RUN_STATUSES:
            yield f"event: end\ndata: {json.dumps({'status': status, 'last_event_id': after})}\n\n"
            return
        if clock() - quiet_since >= heartbeat:
            yield ": heartbeat\n\n"
            quiet_since = clock()
        sleep(poll)


def _resume_point(last_event_id: str | None, after: int | None) -> int:
    if last_event_id not in (None, ""):
        if not last_event_id.strip().isdigit():
            raise ApiError(422, "invalid", "Last-Event-ID must be the id of an event this stream sent",
                           "Last-Event-ID")
        return int(last_event_id)
    return after or 0


@api.get("/runs/{run_id}/events/stream", response=refusals(404), tags=["runs"],
         summary="Follow a run's events (server-sent events)",
         openapi_extra={"responses": {200: {"description": "text/event-stream: one message per event (its id is "
                                                           "the event's), heartbeat comments, then an end message",
                                            "content": {"text/event-stream": {"schema": {"type": "string"}}}}}})
def stream_events(request: HttpRequest, run_id: UUID,
                  after: int | None = Query(default=None, ge=0, description="start after this event id"),
                  last_event_id: str | None = Header(default=None, alias="Last-Event-ID")) -> StreamingHttpResponse:
    """The run's events from the start (or after ``Last-Event-ID``, or ``?after=``), then live
    until the run is terminal. Each message's ``data`` is the event as JSON (id, kind, state,
    created_at, actor, data); the last one, ``event: end``, holds the run's final status."""
    require(request, "orchestrator.view_run")
    start = _resume_point(last_event_id, after)
    if not Run.objects.filter(pk=run_id).exists():
        raise ApiError(404, "run_not_found", f"no run {run_id}", "run_id")
    response = StreamingHttpResponse(follow(run_id, start), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each message on at once
    return response
