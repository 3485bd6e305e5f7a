"""The designer's pages: who may do what, each edit through the page, refusals with their reason,
stale saves, undo and redo, publish, and user text shown as text."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from designer.edits import STARTERS
from designer.forms import FIELDS
from designer.models import Draft
from orchestrator.engine.workflows import publish
from orchestrator.models import WorkflowVersion

from .pages import new, post, revision, url

pytestmark = pytest.mark.django_db
NASTY = '"><svg onload=alert(1)>'


def test_every_page_needs_login(client):
    assert client.get(url("draft_list")).status_code == 302
    assert client.post(url("new_draft"), {"name": "x"}).status_code == 302


def test_a_viewer_sees_but_cannot_change(viewer, designer, django_user_model):
    # (the designer fixture signed the client in as dana; sign the viewer in again)
    new(designer)
    viewer.force_login(django_user_model.objects.get(username="vic"))
    page = viewer.get(url("editor", "shop"))
    assert page.status_code == 200 and 'id="save-state"' not in page.content.decode()
    for action, data in (("edit", {"op": "add", "type": "task", "name": "x"}), ("save_source", {"source": "x"}),
                         ("save_state", {"state": "ingest"}), ("undo", {}), ("publish", {"message": "m"})):
        assert post(viewer, action, **data).status_code == 403, action
    assert revision() == 1


def test_a_designer_starts_from_a_starter_and_sees_graph_findings_and_source(designer):
    response = new(designer)
    assert response.status_code == 302 and response["Location"] == url("editor", "shop")
    html = designer.get(url("editor", "shop")).content.decode()
    assert "<svg" in html and 'class="workflow-graph"' in html
    assert "No findings: the draft can be published." in html
    assert "name: shop" in html and "summarise" in html


@pytest.mark.parametrize("name, message", [("", "a workflow name"), ("1x", "a workflow name")])
def test_a_bad_new_name_is_refused_with_a_message(designer, name, message):
    response = new(designer, name)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Draft.objects.exists()


def test_opening_a_published_workflow_makes_its_draft_from_the_latest_version(designer):
    publish({"name": "legacy", "start_at": "a", "states": {"a": {"type": "succeed"}}})
    html = designer.get(url("editor", "legacy")).content.decode()
    assert Draft.objects.get(name="legacy").revision == 1 and "start_at: a" in html
    assert designer.get(url("editor", "nothing_here")).status_code == 404


def test_clicking_a_state_opens_its_panel_as_a_fragment(designer):
    new(designer)
    response = designer.get(url("editor", "shop"), {"state": "summarise"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<div id="editor"')
    assert "<h2>summarise" in html and 'name="state-handler"' in html
    assert re.search(r'<g id="state_summarise" class="[^"]*selected', html)


def test_the_panel_saves_fields_and_shows_errors_beside_them(designer):
    new(designer)
    bad = post(designer, "save_state", state="ingest", **{"state-handler": "demo.noop", "state-retry": "[{oops"})
    assert bad.status_code == 400 and 'id="error-retry"' in bad.content.decode()
    assert revision() == 1
    ok = post(designer, "save_state", state="ingest", **{"state-handler": "demo.noop", "state-next": "summarise",
                                                         "state-timeout_seconds": "30",
                                                         "state-retry": '[{"max_attempts": 2}]'})
    assert ok.status_code == 200 and revision() == 2
    source = Draft.objects.get(name="shop").revisions.get(number=2).source
    assert "timeout_seconds: 30" in source and "max_attempts: 2" in source


def test_add_connect_rename_delete_through_the_page(designer):
    new(designer)
    assert post(designer, "edit", op="add", state="ingest", type="wait", name="pause").status_code == 200
    html = post(designer, "edit", op="rename", state="pause", name="breathe").content.decode()
    assert "renamed pause to breathe" in html
    html = designer.get(url("editor", "shop"), {"state": "breathe"}).content.decode()
    assert "Named by 1 place" in html and "ingest: next" in html
    html = post(designer, "edit", op="delete", state="breathe").content.decode()
    assert "still named by ingest: next" in html and "error</strong> in" in html  # the finding shows
    assert re.search(r'<g id="state_ingest" class="[^"]*\bproblem\b', html)  # outlined on the graph
    assert post(designer, "edit", op="connect", state="ingest", target="summarise").status_code == 200
    assert "No findings" in designer.get(url("editor", "shop")).content.decode()
    assert revision() == 5


@pytest.mark.parametrize("data, status, message", [
    ({"op": "rename", "state": "ingest", "name": "publish"}, 400, "exists already"),
    ({"op": "add", "type": "teleport", "name": "x"}, 400, "unknown state type"),
    ({"op": "connect", "state": "ingest", "target": "nowhere"}, 400, "no state named"),
    ({"op": "explode"}, 400, "unknown edit"),
])
def test_a_refused_edit_says_why_and_changes_nothing(designer, data, status, message):
    new(designer)
    response = post(designer, "edit", **data)
    assert response.status_code == status and message in response.content.decode()
    assert revision() == 1


def test_a_stale_change_is_refused_with_who_changed_it(designer):
    new(designer)
    post(designer, "edit", op="add", type="task", name="extra")
    response = post(designer, "edit", revision=1, op="add", type="task", name="other")
    assert response.status_code == 409 and "you saw revision 1; it is now revision 2 by dana" in \
        response.content.decode()
    assert revision() == 2


def test_a_source_that_does_not_parse_is_refused_at_its_line_and_the_draft_is_untouched(designer):
    new(designer)
    response = post(designer, "save_source", source="name: shop\nstates:\n  a: [\n", format="yaml")
    html = response.content.decode()
    assert response.status_code == 400 and "line 4" in html and "The saved draft is unchanged" in html
    assert "a: [" in html  # what was typed is kept in the box
    assert revision() == 1
    renamed = post(designer, "save_source", source="name: other\nstart_at: a\nstates:\n  a: {type: succeed}\n",
                   format="yaml")
    assert renamed.status_code == 400 and "must stay" in renamed.content.decode()


def test_source_edits_keep_comments_and_undo_redo_move_between_revisions(designer):
    new(designer)
    text = "name: shop  # our shop\nstart_at: a\nstates:\n  a:\n    type: succeed  # done at once\n"
    assert post(designer, "save_source", source=text, format="yaml").status_code == 200
    post(designer, "save_state", state="a", **{"state-output_path": "result"})
    latest = Draft.objects.get(name="shop").revisions.get(number=3).source
    assert "# our shop" in latest and "# done at once" in latest and "output_path: result" in latest
    post(designer, "undo")
    post(designer, "undo")
    assert revision() == 1
    html = post(designer, "redo").content.decode()
    assert revision() == 2 and "# our shop" in html
    post(designer, "edit", op="add", type="task", name="fresh")  # an edit after an undo drops the redo tail
    assert revision() == 3 and post(designer, "redo").status_code == 400


def test_publish_is_refused_while_errors_remain_then_makes_a_version_with_its_message(designer):
    new(designer)
    post(designer, "edit", op="delete", state="publish")
    refused = post(designer, "publish", message="first")
    assert refused.status_code == 400 and "not published" in refused.content.decode()
    assert not WorkflowVersion.objects.exists()
    post(designer, "undo")
    done = post(designer, "publish", message="first cut")
    assert done.status_code == 302 or done.status_code == 200
    version = WorkflowVersion.objects.get(workflow__name="shop")
    assert version.number == 1 and version.message == "first cut" and version.created_by.username == "dana"


def test_user_text_is_escaped_in_the_page_and_the_graph(designer):
    new(designer)
    post(designer, "save_state", state="ingest", **{"state-handler": "demo.noop", "state-next": "summarise",
                                                    "state-title": NASTY, "state-comment": NASTY})
    html = designer.get(url("editor", "shop"), {"state": "ingest"}).content.decode()
    assert NASTY not in html and "&quot;&gt;&lt;svg onload=alert(1)&gt;" in html


def test_a_dangling_reference_stays_in_the_panel_until_changed(designer):
    new(designer)
    post(designer, "edit", op="delete", state="publish")
    html = designer.get(url("editor", "shop"), {"state": "summarise"}).content.decode()
    assert '<option value="publish" selected>publish (no such state)</option>' in html
    post(designer, "save_state", state="summarise", **{"state-handler": "demo.noop", "state-next": "publish"})
    assert "next: publish" in Draft.objects.get(name="shop").revisions.get(number=revision()).source


def test_saving_the_panel_unchanged_makes_no_revision(designer):
    new(designer)
    post(designer, "save_state", state="ingest", **{"state-handler": "demo.noop", "state-next": "summarise"})
    assert revision() == 1


def test_the_editor_costs_a_fixed_number_of_queries(designer):
    new(designer)
    counts = []
    for extra in range(2):
        if extra:  # more states and more revisions
            for i in range(5):
                post(designer, "edit", op="add", state="ingest", type="task", name=f"more{i}")
        with CaptureQueriesContext(connection) as queries:
            assert designer.get(url("editor", "shop"), {"state": "ingest"}).status_code == 200
        counts.append(len(queries))
    # session, user, the user's permissions (two), draft, its revision, the last revision's number,
    # the revision's author, the latest published version
    assert counts == [9, 9], counts


@pytest.mark.parametrize("fmt, kind, start", [("yaml", "application/yaml", b"name: shop"),
                                             ("json", "application/json", b"{"),
                                             ("svg", "image/svg+xml", b"<svg"),
                                             ("png", "image/png", b"\x89PNG")])
def test_a_draft_exports_as_yaml_json_svg_and_png(designer, fmt, kind, start):
    new(designer)
    response = designer.get(reverse("designer:export", args=["shop", fmt]))
    assert response.status_code == 200 and response["Content-Type"] == kind
    assert response.content.startswith(start)
    assert response["Content-Disposition"] == f'attachment; filename="shop.{fmt}"'
    assert designer.get(reverse("designer:export", args=["shop", "exe"])).status_code == 404


def test_a_draft_is_duplicated_under_a_new_name_with_its_comments(designer):
    new(designer)
    text = "name: shop  # our shop\nstart_at: a\nstates:\n  a:\n    type: succeed\n"
    post(designer, "save_source", source=text, format="yaml")
    response = designer.post(url("new_draft"), {"name": "shop_copy", "copy_of": "shop"})
    assert response.status_code == 302
    copy = Draft.objects.get(name="shop_copy").revisions.get(number=1)
    assert copy.source.startswith("name: shop_copy") and "# our shop" in copy.source
    assert copy.note == "created from a copy of shop"


def test_an_import_that_does_not_parse_is_refused_with_its_line_and_nothing_is_saved(designer):
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("flow.yaml", b"name: flow\nstates:\n  a: [\n")
    response = designer.post(url("new_draft"), {"name": "flow", "file": bad})
    assert response.status_code == 400 and "line 4" in response.content.decode()
    assert not Draft.objects.exists()
    good = SimpleUploadedFile("flow.json", b'{"name": "flow", "start_at": "a", "states": {"a": {"type": "succeed"}}}')
    assert designer.post(url("new_draft"), {"name": "flow", "file": good}).status_code == 302
    assert Draft.objects.get(name="flow").revisions.get().format == "json"


def test_the_designer_bench_prints_its_line():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("bench_designer", "--states", "20", "--repeats", "2", stdout=out)
    assert re.match(r"bench: designer_render_20_states_ms_p50=[0-9.]+ .* missed=", out.getvalue())


def test_the_list_shows_every_workflow_and_draft_with_filters_and_previews(designer):
    publish({"name": "legacy", "topology": "pipeline", "start_at": "a", "states": {"a": {"type": "succeed"}}})
    new(designer, "agent_one", "single_agent")
    new(designer, "shop")
    html = designer.get(url("draft_list")).content.decode()
    assert all(f'id="entry-{name}"' in html for name in ("legacy", "agent_one", "shop"))
    assert html.count('class="workflow-graph"') == 3  # a preview each
    only = designer.get(url("draft_list"), {"topology": "single"}).content.decode()
    assert 'id="entry-agent_one"' in only and 'id="entry-shop"' not in only
    found = designer.get(url("draft_list"), {"q": "LEG", "status": "published"}).content.decode()
    assert 'id="entry-legacy"' in found and 'id="entry-shop"' not in found
    with CaptureQueriesContext(connection) as queries:
        designer.get(url("draft_list"))
    assert len(queries) == 6  # session, user, two permission lookups, workflows, drafts


def test_a_state_is_copied_from_one_draft_and_pasted_in_another(designer):
    new(designer, "shop")
    new(designer, "other", "approval")
    html = post(designer, "copy_state", state="summarise").content.decode()
    assert "copied summarise" in html
    pasted = post(designer, "paste_state", draft="other").content.decode()
    assert "pasted summarise from shop as summarise" in pasted and "<h2>summarise" in pasted
    again = post(designer, "paste_state", draft="other").content.decode()
    assert "as summarise_2" in again
    doc = Draft.objects.get(name="other").revisions.get(number=revision("other")).source
    assert "summarise_2:" in doc and "next: publish" not in doc  # it leads nowhere until connected


def test_a_source_that_breaks_the_schema_is_refused_at_the_states_line(designer):
    new(designer)
    text = "name: shop\nstart_at: a\nstates:\n  a:\n    type: succeed\n  b:\n    type: teleport\n"
    response = post(designer, "save_source", source=text, format="yaml")
    html = response.content.decode()
    assert response.status_code == 400 and "line 6" in html and "b: " in html and "use one of" in html
    assert revision() == 1


def test_a_stale_change_links_to_what_changed_since(designer):
    new(designer)
    post(designer, "edit", op="add", type="task", name="extra")
    html = post(designer, "edit", revision=1, op="add", type="task", name="other").content.decode()
    link = url("compare", "shop") + "?a=r1&amp;b=draft"
    assert f'href="{link}" id="see-other-change"' in html
    diff_page = designer.get(url("compare", "shop"), {"a": "r1", "b": "draft"}).content.decode()
    assert "revision 1 → the draft (revision 2)" in diff_page and "<li>extra</li>" in diff_page


def test_a_reducer_and_a_join_are_set_field_by_field(designer):
    new(designer, "fan", "supervisor_worker")
    html = designer.get(url("editor", "fan"), {"state": "research"}).content.decode()
    assert '<option value="collect" selected>collect</option>' in html  # the starter's strategy
    branches = json.dumps(designer.get(url("export", "fan", "json")).json()["states"]["research"]["branches"])
    saved = post(designer, "save_state", draft="fan", state="research",
                 **{"state-reducer__strategy": "highest_score", "state-reducer__on_conflict": "prefer_first",
                    "state-reducer__path": "score", "state-join__mode": "quorum", "state-join__count": "1",
                    "state-next": "done", "state-branches": branches})
    assert saved.status_code == 200, saved.content.decode()[:300]
    source = Draft.objects.get(name="fan").revisions.get(number=revision("fan")).source
    assert "strategy: highest_score" in source and "on_conflict: prefer_first" in source and "path: score" in source
    assert "mode: quorum" in source and "count: 1" in source
    post(designer, "save_state", draft="fan", state="research",
         **{"state-reducer__strategy": "collect", "state-next": "done", "state-branches": branches})
    latest = Draft.objects.get(name="fan").revisions.get(number=revision("fan")).source
    assert "join:" not in latest and "path: score" not in latest  # emptied fields go, with their mapping


def test_the_workflows_own_settings_set_budgets_and_topology(designer):
    new(designer)
    html = designer.get(url("editor", "shop")).content.decode()
    assert 'id="workflow-form"' in html and "budgets.max_steps" in html
    post(designer, "save_workflow", **{"state-budgets__max_steps": "30", "state-topology": "pipeline",
                                       "state-title": "The shop"})
    source = Draft.objects.get(name="shop").revisions.get(number=revision()).source
    assert "max_steps: 30" in source and "title: The shop" in source
    bad = post(designer, "save_workflow", **{"state-budgets__max_steps": "-3"})
    assert bad.status_code == 400 and 'id="error-budgets__max_steps"' in bad.content.decode()


def test_an_approvals_deciders_are_chosen_among_the_groups(designer):
    from django.contrib.auth.models import Group

    Group.objects.get_or_create(name="finance")
    new(designer, "flow", "approval")
    html = designer.get(url("editor", "flow"), {"state": "review"}).content.decode()
    assert 'value="finance"' in html and 'value="designers"' in html
    post(designer, "save_state", draft="flow", state="review",
         **{"state-approvers__groups": ["finance"], "state-title": "Approve?", "state-next": "done",
            "state-reject": "rejected", "state-four_eyes": "on"})
    source = Draft.objects.get(name="flow").revisions.get(number=revision("flow")).source
    assert "approvers:" in source and "- finance" in source and "four_eyes" not in source  # on is the default


def test_an_import_that_breaks_the_schema_is_refused_at_its_line(designer):
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("flow.yaml", b"name: flow\nstart_at: a\nstates:\n  a:\n    type: teleport\n")
    response = designer.post(url("new_draft"), {"name": "flow", "file": bad})
    assert response.status_code == 400 and "line 4" in response.content.decode()
    assert not Draft.objects.exists()


@pytest.mark.parametrize("kind", list(STARTERS))
def test_every_state_types_panel_has_its_form(designer, kind):
    new(designer)
    post(designer, "edit", op="add", state="ingest", type=kind, name="added")
    html = designer.get(url("editor", "shop"), {"state": "added"}).content.decode()
    assert f"<h2>added <span class=\"muted\">{kind}</span></h2>" in html
    for name, _, _ in FIELDS[kind]:
        assert f'name="state-{name.replace(".", "__")}"' in html, name
