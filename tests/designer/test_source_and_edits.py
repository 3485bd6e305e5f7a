"""The designer's source round trip (line numbers, comments kept) and its graph edits."""

from __future__ import annotations

import pytest

from designer import edits, source
from designer.starters import STARTERS, starter_source
from orchestrator.engine.validator import validate

PIPELINE = """\
name: shop
# the order flow
budgets:
  max_steps: 20
start_at: fetch
states:
  fetch:
    type: task
    handler: demo.noop  # looks the order up
    next: ship
  ship:
    type: task
    handler: demo.noop
    retry:
      - max_attempts: 3
    catch:
      - errors: ["*"]
        next: fetch
    end: true
"""


@pytest.mark.parametrize("text, fmt, line", [
    ("name: x\nstates:\n  a: [unclosed\n", "yaml", 4),
    ("name: x\n  bad indent: 1\n", "yaml", 2),
    ('{\n  "name": "x",\n  "states": {,}\n}', "json", 3),
])
def test_a_syntax_error_names_its_line(text, fmt, line):
    with pytest.raises(source.SourceError) as caught:
        source.parse(text, fmt)
    assert caught.value.line == line and str(caught.value).startswith(f"line {line}")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "when: 2025-01-01\n"])
def test_a_document_that_is_not_a_plain_mapping_is_refused(text):
    with pytest.raises(source.SourceError):
        source.parse(text, "yaml")


def test_an_edit_keeps_comments_and_key_order():
    doc = source.load(PIPELINE, "yaml")
    edits.set_fields(doc, "fetch", {"timeout_seconds": 30})
    text = source.dump(doc, "yaml")
    assert "# the order flow" in text and "# looks the order up" in text
    assert text.index("fetch:") < text.index("ship:") and "timeout_seconds: 30" in text
    assert source.parse(text, "yaml")["states"]["fetch"]["timeout_seconds"] == 30


def test_json_round_trips_as_json():
    doc = source.parse(PIPELINE, "yaml")
    assert source.parse(source.dump(doc, "json"), "json") == doc


def test_rename_follows_every_reference_and_keeps_the_place():
    doc = source.load(PIPELINE, "yaml")
    assert edits.rename(doc, "fetch", "lookup") == 2  # start_at and the catch rule
    plain = source.plain(doc)
    assert list(plain["states"]) == ["lookup", "ship"] and plain["start_at"] == "lookup"
    assert plain["states"]["ship"]["catch"][0]["next"] == "lookup"
    assert validate(plain) == []
    assert "# looks the order up" in source.dump(doc, "yaml")


@pytest.mark.parametrize("new, message", [("ship", "exists already"), ("1bad", "is not a state name"),
                                          ('"><svg onload=alert(1)>', "is not a state name")])
def test_rename_onto_a_bad_or_taken_name_is_refused(new, message):
    doc = source.load(PIPELINE, "yaml")
    with pytest.raises(edits.EditError, match=message):
        edits.rename(doc, "fetch", new)
    assert source.dump(doc, "yaml") == PIPELINE  # nothing changed


def test_delete_reports_what_named_the_state_and_the_validator_finds_it():
    doc = source.load(PIPELINE, "yaml")
    assert [str(r) for r in edits.references(doc, "ship")] == ["fetch: next"]
    broken = edits.delete_state(doc, "ship")
    assert [str(r) for r in broken] == ["fetch: next"]
    assert any(f.state == "fetch" for f in validate(source.plain(doc)))


def test_a_state_added_after_another_goes_between_it_and_what_followed():
    doc = source.load(PIPELINE, "yaml")
    edits.add_state(doc, "notify", "task", after="fetch")
    plain = source.plain(doc)
    assert plain["states"]["fetch"]["next"] == "notify" and plain["states"]["notify"]["next"] == "ship"
    assert validate(plain) == []
    edits.add_state(doc, "audit", "task", after="ship")  # after the last state: it ends the run
    plain = source.plain(doc)
    assert plain["states"]["ship"]["next"] == "audit" and plain["states"]["audit"]["end"] is True
    assert "end" not in plain["states"]["ship"]
    edits.connect(doc, "audit", "notify")
    assert source.plain(doc)["states"]["audit"]["next"] == "notify"


def test_connecting_a_choice_sets_its_default_and_a_terminal_state_leads_nowhere():
    doc = source.load("name: x\nstart_at: pick\nstates:\n  pick: {type: choice, choices: []}\n"
                      "  done: {type: succeed}\n", "yaml")
    assert "default" in edits.connect(doc, "pick", "done")
    assert doc["states"]["pick"]["default"] == "done"
    with pytest.raises(edits.EditError, match="a run ends there"):
        edits.connect(doc, "done", "pick")


@pytest.mark.parametrize("kind", list(edits.STARTERS))
def test_every_state_type_can_be_added_and_validates_once_connected(kind):
    doc = source.load("name: x\nstart_at: first\nstates:\n  first: {type: task, handler: demo.noop, end: true}\n",
                      "yaml")
    edits.add_state(doc, "added", kind, after="first")
    plain = source.plain(doc)
    assert plain["states"]["added"]["type"] == kind and plain["states"]["first"]["next"] == "added"
    findings = [f for f in validate(plain) if f.severity == "error"]
    if kind in edits.NEEDS_TARGET:  # what to point it at is the designer's to say
        assert findings and all(f.state == "added" for f in findings), findings
    else:
        assert findings == [], findings


def test_a_type_change_and_an_unknown_state_are_refused():
    doc = source.load(PIPELINE, "yaml")
    with pytest.raises(edits.EditError, match="type does not change"):
        edits.set_fields(doc, "fetch", {"type": "wait"})
    with pytest.raises(edits.EditError, match="no state named"):
        edits.set_fields(doc, "nope", {"next": "ship"})
    with pytest.raises(edits.EditError, match="unknown state type"):
        edits.add_state(doc, "x", "teleport")


@pytest.mark.parametrize("key", list(STARTERS))
def test_every_starter_is_a_valid_workflow(key):
    doc = source.parse(starter_source(key, "fresh"), "yaml")
    assert doc["name"] == "fresh" and validate(doc) == []
