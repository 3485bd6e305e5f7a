"""Comparing versions: states and transitions added, removed and changed, drawn on the newer graph
and listed in words; the draft against the latest version; the run page's link to the version of
the last run that succeeded."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from designer.diff import diff
from orchestrator.engine.workflows import publish
from orchestrator.models import Run, RunStatus

from .pages import post

pytestmark = pytest.mark.django_db

V1 = {"name": "shop", "start_at": "fetch", "states": {
    "fetch": {"type": "task", "handler": "demo.noop", "next": "ship"},
    "ship": {"type": "task", "handler": "demo.noop", "next": "done"},
    "done": {"type": "succeed"}}}
V2 = {"name": "shop", "start_at": "fetch", "timeout_seconds": 600, "states": {
    "fetch": {"type": "task", "handler": "demo.noop", "next": "check", "timeout_seconds": 30},
    "check": {"type": "task", "handler": "demo.noop", "next": "done"},
    "done": {"type": "succeed"}}}


def test_diff_names_every_change():
    changes = diff(V1, V2)
    assert changes.added == ["check"] and changes.removed == ["ship"]
    assert {c.key: (c.old_text, c.new_text) for c in changes.changed["fetch"]} == {
        "next": ('"ship"', '"check"'), "timeout_seconds": ("(none)", "30")}
    assert [str(t) for t in changes.transitions_added] == ["check → done (next)", "fetch → check (next)"]
    assert [str(t) for t in changes.transitions_removed] == ["fetch → ship (next)", "ship → done (next)"]
    assert [(c.key, c.new_text) for c in changes.workflow] == [("timeout_seconds", "600")]
    assert changes.highlights() == {"fetch": "changed", "check": "added", "ship": "removed"}
    assert diff(V1, V1).empty


def test_a_branch_state_is_compared_as_a_state_of_its_own():
    fork = {"type": "parallel", "end": True, "branches": {"a": {"start_at": "x", "states": {
        "x": {"type": "task", "handler": "demo.noop", "end": True}}}}}
    old = {"name": "f", "start_at": "fork", "states": {"fork": fork}}
    new = {"name": "f", "start_at": "fork", "states": {"fork": {**fork, "branches": {"a": {"start_at": "x", "states": {
        "x": {"type": "task", "handler": "demo.other", "end": True}}}}}}}
    changes = diff(old, new)
    assert list(changes.changed) == ["x"] and changes.changed["x"][0].key == "handler"


def test_the_compare_page_draws_the_newer_graph_with_the_changes_outlined(viewer):
    publish(V1, message="first")
    publish(V2, message="second")
    response = viewer.get(reverse("designer:compare", args=["shop"]))
    html = response.content.decode()
    assert response.status_code == 200 and "version 1 → version 2" in html
    assert re.search(r'<g id="state_check" class="[^"]*\badded\b', html)
    assert re.search(r'<g id="state_fetch" class="[^"]*\bchanged\b', html)
    added = re.findall(r'<g id="[^"]*" class="edge edge_next edge_added">', html)
    assert len(added) == 2, added  # fetch -> check and check -> done; done's own edge is old
    assert re.search(r'<g id="state_ship" class="[^"]*\bremoved\b', html)  # drawn, and said
    assert len(re.findall(r'class="edge edge_removed"', html)) == 2  # fetch -> ship, ship -> done
    assert "States removed" in html and "<li>ship</li>" in html and "fetch → ship (next)" in html
    versions = viewer.get(reverse("designer:versions", args=["shop"])).content.decode()
    assert "second" in versions and "changes from v1" in versions


@pytest.mark.parametrize("query, message", [({"a": "9"}, "has no version 9"), ({"a": "x"}, "by number"),
                                            ({"b": "draft"}, "has no draft")])
def test_a_comparison_that_cannot_be_made_says_why(viewer, query, message):
    publish(V1)
    response = viewer.get(reverse("designer:compare", args=["shop"]), query)
    assert response.status_code == 400 and message in response.content.decode()


def test_the_draft_is_compared_with_the_latest_version_from_the_editor(designer):
    publish(V1)
    html = designer.get(reverse("designer:editor", args=["shop"])).content.decode()
    assert 'id="compare-draft"' in html
    post(designer, "edit", op="add", state="fetch", type="wait", name="pause")
    page = designer.get(reverse("designer:compare", args=["shop"]), {"a": "1", "b": "draft"}).content.decode()
    assert "version 1 → the draft (revision 2)" in page and "fetch → pause (next)" in page


def test_the_run_page_links_to_the_version_of_the_last_run_that_succeeded(viewer):
    v1, _ = publish(V1)
    v2, _ = publish(V2)
    earlier = timezone.now() - timedelta(hours=1)
    Run.objects.create(workflow=v1.workflow, version=v1, status=RunStatus.SUCCEEDED, finished_at=earlier)
    failed = Run.objects.create(workflow=v2.workflow, version=v2, status=RunStatus.FAILED)
    html = viewer.get(reverse("monitoring:run_detail", args=[failed.pk])).content.decode()
    link = reverse("designer:compare", args=["shop"]) + "?a=1&amp;b=2"
    assert f'href="{link}" id="compare-last-good"' in html
    good = Run.objects.create(workflow=v2.workflow, version=v2, status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    assert 'id="compare-last-good"' not in viewer.get(reverse("monitoring:run_detail", args=[good.pk])).content.decode()
