"""The designer in Chromium: a new workflow from a starter, a state chosen on the graph and
edited in its panel, a field error shown beside its field, a state added and renamed, a deletion
that breaks a reference found on the graph and in the findings, undo, publish. No full reload
between the edits (htmx swaps the editor). Screenshots under var/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from orchestrator.models import Run, RunStatus, WorkflowVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def settled(page) -> None:
    """Wait until htmx has settled its last swap: until then the new forms' triggers are not bound."""
    page.wait_for_function("() => !document.querySelector('.htmx-settling, .htmx-swapping, .htmx-added')")


def new_draft(page, name: str, starter: str = "pipeline") -> None:
    """From the designer's list: a new draft from a starter, its editor open."""
    page.fill("input[name=name]", name)
    page.select_option("select[name=starter]", starter)
    page.click("text=Create draft")
    page.wait_for_url(f"**/designer/{name}/")


def test_a_designer_builds_checks_and_publishes_a_workflow_in_the_browser(signed_in, workers, screenshots):
    page = signed_in
    page.click("nav >> text=Designer")
    new_draft(page, "shop")
    expect(page.locator("#findings")).to_contain_text("No findings")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    page.click("svg.workflow-graph a[hx-get*='state=summarise']")
    page.wait_for_url("**/designer/shop/?state=summarise")
    expect(page.locator("#panel h2")).to_contain_text("summarise")
    expect(page.locator("svg.workflow-graph g.selected")).to_contain_text("summarise")
    page.fill("#id_state-retry", '[{"max_attempts": 3')  # not JSON: shown beside the field, nothing saved
    page.click("#save-state")
    expect(page.locator("#error-retry")).to_be_visible()
    expect(page.locator("#revision")).to_have_text("1")

    add = page.locator("#add-after-form")
    add.locator("select[name=type]").select_option("wait")
    add.locator("input[name=name]").fill("cool_down")
    add.locator("button").click()
    expect(page.locator("#editor-message")).to_contain_text("added wait state cool_down after summarise")
    expect(page.locator("#panel h2")).to_contain_text("cool_down")
    expect(page.locator("svg.workflow-graph")).to_contain_text("cool_down")

    rename = page.locator("#rename-form")
    rename.locator("input[name=name]").fill("breather")
    rename.locator("button").click()
    expect(page.locator("#editor-message")).to_contain_text("renamed cool_down to breather")

    page.fill("#id_state-seconds", "2")
    page.click("#save-state")
    expect(page.locator("#editor-message")).to_contain_text("changed breather")
    expect(page.locator("#revision")).to_have_text("4")

    page.click("svg.workflow-graph a[hx-get*='state=publish']")
    expect(page.locator("#delete-impact")).to_contain_text("breather: next")
    page.click("#delete-form button")
    expect(page.locator("#findings")).to_contain_text("error")
    expect(page.locator("#publish")).to_be_disabled()
    expect(page.locator("svg.workflow-graph g.problem")).to_contain_text("breather")
    page.click("#findings a.finding-state")  # a finding selects its state
    expect(page.locator("#panel h2")).to_contain_text("breather")
    page.screenshot(path=str(screenshots / "designer-finding.png"), full_page=True)

    page.click("#undo")
    expect(page.locator("#findings")).to_contain_text("No findings")
    assert page.evaluate("window.__sameDocument") is True
    page.fill("input[name=message]", "a pause before publishing")
    page.click("#publish")
    expect(page.locator("#editor-message")).to_contain_text("published as version 1")
    assert page.evaluate("window.__sameDocument") is True
    version = WorkflowVersion.objects.get(workflow__name="shop")
    assert version.message == "a pause before publishing"
    assert version.definition["states"]["breather"] == {"type": "wait", "seconds": 2, "next": "publish"}
    page.screenshot(path=str(screenshots / "designer-published.png"), full_page=True)

    # a second version, compared with the first on the graph
    page.click("svg.workflow-graph a[hx-get*='state=ingest']")
    expect(page.locator("#panel h2")).to_contain_text("ingest")
    page.fill("#id_state-timeout_seconds", "30")
    page.click("#save-state")
    expect(page.locator("#editor-message")).to_contain_text("changed ingest")
    page.fill("input[name=message]", "a timeout on ingest")
    page.click("#publish")
    expect(page.locator("#editor-message")).to_contain_text("published as version 2")
    page.goto("/designer/shop/versions/")
    expect(page.locator("table")).to_contain_text("a timeout on ingest")
    page.click("text=changes from v1")
    expect(page.locator("h1")).to_contain_text("version 1 → version 2")
    expect(page.locator("svg.workflow-graph g.changed")).to_contain_text("ingest")
    expect(page.locator("#changes")).to_contain_text("timeout_seconds")
    page.screenshot(path=str(screenshots / "designer-compare.png"), full_page=True)

    # and a run of it, watched to the end
    workers(1)
    page.goto("/workflows/shop/")
    page.click("button:has-text('Start run')")
    page.wait_for_url("**/runs/**")
    page.locator(".summary .badge-succeeded").wait_for(timeout=45_000)
    run = Run.objects.get()
    assert run.status == RunStatus.SUCCEEDED and run.version.number == 2

    # and one state tried for real on that worker, nothing of a run created
    page.goto("/designer/shop/?state=summarise")
    page.click("#test-state")
    expect(page.locator(".trial .badge")).to_have_text("Succeeded", timeout=20_000)  # polled until it ends
    expect(page.locator("#trial-output")).to_be_visible()
    assert Run.objects.count() == 1


def test_a_guard_is_built_with_the_condition_builder_and_drawn_on_the_graph(signed_in, screenshots):
    page = signed_in
    page.goto("/designer/")
    new_draft(page, "gated")
    page.click("svg.workflow-graph a[hx-get*='state=ingest']")
    expect(page.locator("#panel h2")).to_contain_text("ingest")
    add = page.locator("#add-after-form")
    add.locator("select[name=type]").select_option("choice")
    add.locator("input[name=name]").fill("route")
    add.locator("button").click()
    expect(page.locator("#panel h2")).to_contain_text("route")
    expect(page.locator("#findings")).to_contain_text("route")  # a choice with no rule and no default

    page.click("#add-rule")
    builder = page.locator("#rule-builder")
    builder.locator("input[name=path_0]").fill("input.amount")
    builder.locator("select[name=op_0]").select_option("gt")
    builder.locator("input[name=value_0]").fill("100")
    page.click("#add-condition")  # a second row, nothing saved yet
    expect(page.locator("#rule-builder .rule-row")).to_have_count(2)
    expect(page.locator("#rule-builder input[name=path_0]")).to_have_value("input.amount")
    page.click("#rule-builder button[value=remove_1]")
    expect(page.locator("#rule-builder .rule-row")).to_have_count(1)
    page.locator("#rule-builder select[name=target]").select_option("publish")
    page.click("#save-rule")
    expect(page.locator("#editor-message")).to_contain_text("added rule 1 to route")
    expect(page.locator("#rules")).to_contain_text("input.amount > 100")
    expect(page.locator("svg.workflow-graph")).to_contain_text("input.amount > 100")

    connect = page.locator("#connect-form")
    connect.locator("select[name=target]").select_option("summarise")
    connect.locator("button").click()
    expect(page.locator("#editor-message")).to_contain_text("summarise is now the default of route")
    expect(page.locator("#findings")).to_contain_text("No findings")
    page.screenshot(path=str(screenshots / "designer-condition-builder.png"), full_page=True)

    # a dry run takes the guarded path, marked on the graph
    page.fill("#dry-run-form textarea[name=input]", '{"amount": 150}')
    page.click("#start-dry-run")
    expect(page.locator("#dry-run-outcome")).to_contain_text("Succeeded")
    expect(page.locator("#dry-run-steps")).to_contain_text("rule 1 holds: goes to publish")
    expect(page.locator("svg.workflow-graph g.status_visited")).to_have_count(3)  # ingest, route, publish
    page.screenshot(path=str(screenshots / "designer-dry-run.png"), full_page=True)

    # never lose an edit: a panel field saves when it is left; unsent source text asks first
    page.click("svg.workflow-graph a[hx-get*='state=summarise']")
    expect(page.locator("#panel h2")).to_contain_text("summarise")
    settled(page)
    page.fill("#id_state-title", "Summarise it")
    page.locator("#id_state-title").press("Tab")  # no Save button pressed
    expect(page.locator("#editor-message")).to_contain_text("changed summarise")
    expect(page.locator("#revision")).to_have_text("5")
    page.locator("#source-form textarea").fill("name: gated\n# typed, not saved\n")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("svg.workflow-graph a[hx-get*='state=ingest']")
    expect(page.locator("#panel h2")).to_contain_text("summarise")  # the editor stayed
    assert asked and "not saved" in asked[0]
    assert "# typed, not saved" in page.locator("#source-form textarea").input_value()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("svg.workflow-graph a[hx-get*='state=ingest']")
    expect(page.locator("#panel h2")).to_contain_text("ingest")

    # keyboard: the help, zoom, undo
    page.locator("body").click(position={"x": 5, "y": 300})  # nothing focused that takes typing
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    width = page.locator("svg.workflow-graph").bounding_box()["width"]
    page.keyboard.press("+")
    assert page.locator("svg.workflow-graph").bounding_box()["width"] > width * 1.2
    page.keyboard.press("Control+z")
    expect(page.locator("#revision")).to_have_text("4")
    expect(page.locator("svg.workflow-graph")).not_to_contain_text("Summarise it")  # the title is undone


def test_a_supervisor_worker_workflow_is_built_from_an_empty_draft_by_clicking(signed_in, screenshots):
    page = signed_in
    page.goto("/designer/")
    new_draft(page, "research_flow", "empty")

    add = page.locator("#add-form")  # nothing selected: the palette
    add.locator("select[name=type]").select_option("parallel")
    add.locator("input[name=name]").fill("research")
    add.locator("button").click()
    expect(page.locator("#panel h2")).to_contain_text("research")
    page.click("#start-form button")
    expect(page.locator("#is-start")).to_be_visible()
    connect = page.locator("#connect-form")
    connect.locator("select[name=target]").select_option("done")
    connect.locator("button").click()
    expect(page.locator("#editor-message")).to_contain_text("research now leads to done")

    page.click("svg.workflow-graph a[hx-get*='state=research_first']")  # a state inside the branch
    expect(page.locator("#panel h2")).to_contain_text("research_first")
    add = page.locator("#add-after-form")
    add.locator("select[name=type]").select_option("task")
    add.locator("input[name=name]").fill("analyse")
    add.locator("button").click()
    expect(page.locator("#editor-message")).to_contain_text("added task state analyse after research_first")

    source = page.locator("#source-form textarea")  # declare the topology in the source
    source.fill(source.input_value().replace("name: research_flow\n", "name: research_flow\ntopology: "
                                                                     "supervisor_worker\n", 1))
    page.click("#save-source")
    expect(page.locator("#editor-message")).to_contain_text("source saved")
    expect(page.locator("svg.workflow-graph g.problem")).to_contain_text("research")  # a fan-out needs a reducer
    expect(page.locator("#publish")).to_be_disabled()
    page.click("#findings a.finding-state")
    expect(page.locator("#panel h2")).to_contain_text("research")
    settled(page)
    page.select_option("#id_state-reducer__strategy", "collect")  # saved as it changes
    expect(page.locator("#editor-message")).to_contain_text("changed research")
    expect(page.locator("#findings")).to_contain_text("No findings")

    page.click("#start-dry-run")
    expect(page.locator("#dry-run-outcome")).to_contain_text("Succeeded")
    expect(page.locator("#dry-run-steps")).to_contain_text("joins: the collect reducer merges the outputs")
    page.fill("input[name=message]", "built by clicking")
    page.click("#publish")
    expect(page.locator("#editor-message")).to_contain_text("published as version 1")
    page.screenshot(path=str(screenshots / "designer-supervisor-worker.png"), full_page=True)
    definition = WorkflowVersion.objects.get(workflow__name="research_flow").definition
    assert definition["topology"] == "supervisor_worker" and definition["start_at"] == "research"
    branch = definition["states"]["research"]["branches"]["first"]
    assert branch["states"]["research_first"]["next"] == "analyse"
