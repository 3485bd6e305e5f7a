"""Stored XSS payloads in every field a user can edit, built through the engine's own paths
(publish, start_run, decide, a draft), for the server-side checks (test_xss.py) and Chromium
(tests/browser/test_xss.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group

from designer.drafts import create_draft
from orchestrator.engine import approvals
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import ApprovalRequest, ApprovalStatus, Run

from ..engine.test_approvals import play
from ..workflows import task

# Breaks out of text, attributes in either quote, <title>, <textarea> and an SVG text node.
PAYLOAD = "</title></textarea>'\"><img src=x onerror=alert(1)><script>alert(2)</script><svg onload=alert(3)>"
# What must never be found raw in a page that shows the payload.
MARKUP = ("<img src=x", "<script>alert", "<svg onload", "onerror=alert(1)>")
WORKFLOW = "xss_probe"
DRAFT = "xss_draft"


@dataclass
class Probe:
    """A run that went through every step with the payload, a run still waiting with it, a draft."""

    finished: Run
    waiting: Run
    approval: ApprovalRequest


def definition(name: str = WORKFLOW) -> dict[str, Any]:
    """Payloads in the workflow's title and description, state titles and comments, a guard's
    value, an approval's title, an effect's key and a handler's error message."""
    return {
        "name": name, "title": PAYLOAD, "description": PAYLOAD, "start_at": "charge",
        "states": {
            "charge": task("test.charge_with_compensation", args={"key": f"key-{PAYLOAD}"}, title=PAYLOAD,
                           comment=PAYLOAD, next="route"),
            "route": {"type": "choice", "title": PAYLOAD, "comment": PAYLOAD, "default": "review", "choices": [
                {"condition": {"path": "input.note", "op": "eq", "value": PAYLOAD}, "next": "review"}]},
            "review": {"type": "approval", "title": PAYLOAD, "approvers": {"groups": ["xss_reviewers"]},
                       "next": "explode", "reject": "explode"},
            "explode": task("test.fail", args={"message": PAYLOAD}, title=PAYLOAD, end=True),
        },
    }


def draft_source() -> str:
    """A draft (not published: it need not pass every check) whose handler, targets and start
    name the payload: the designer draws the unknown targets and lists the findings."""
    return json.dumps({
        "name": DRAFT, "title": PAYLOAD, "description": PAYLOAD, "start_at": PAYLOAD,
        "states": {
            "first": {"type": "task", "handler": PAYLOAD, "title": PAYLOAD, "comment": PAYLOAD, "next": PAYLOAD},
            "pick": {"type": "choice", "choices": [{"condition": {"path": PAYLOAD, "op": "eq", "value": PAYLOAD},
                                                   "next": PAYLOAD}], "default": "first"},
        },
    }, indent=2)


def build(starter: Any, reviewer: Any) -> Probe:
    """Everything, with ``starter`` starting the runs and ``reviewer`` deciding one approval."""
    group, _ = Group.objects.get_or_create(name="xss_reviewers")
    reviewer.groups.add(group)
    publish(definition())
    run_input = {"note": PAYLOAD, PAYLOAD: [PAYLOAD]}
    finished = play(start_run(WORKFLOW, run_input, user=starter)[0])
    request = ApprovalRequest.objects.get(run=finished, status=ApprovalStatus.PENDING)
    approvals.decide(request.pk, reviewer, "approve", PAYLOAD)
    finished = play(finished)
    waiting = play(start_run(WORKFLOW, run_input, user=starter)[0])
    approval = ApprovalRequest.objects.get(run=waiting, status=ApprovalStatus.PENDING)
    create_draft(DRAFT, draft_source(), "json", starter)
    return Probe(finished, waiting, approval)


def pages(probe: Probe) -> list[str]:
    """Every page that shows some of the payloads."""
    finished, waiting = probe.finished.pk, probe.waiting.pk
    return [
        "/", "/runs/", f"/runs/?q={PAYLOAD}", f"/runs/{finished}/", f"/runs/{finished}/events", f"/runs/{waiting}/",
        "/workflows/", f"/workflows/{WORKFLOW}/", "/approvals/", "/failures/", "/dashboards/kpis/",
        "/designer/", f"/designer/{WORKFLOW}/", f"/designer/{WORKFLOW}/?state=route",
        f"/designer/{WORKFLOW}/versions/", f"/designer/{DRAFT}/", f"/designer/{DRAFT}/?state=first",
        f"/designer/{DRAFT}/?state=pick",
    ]
