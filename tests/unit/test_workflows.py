"""Workflows: publish immutable numbered versions, load YAML/JSON, export, and the
import_workflow / export_workflow management commands."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestrator.demo import WORKFLOWS_DIR
from orchestrator.engine.errors import DefinitionError, WorkflowNotFound
from orchestrator.engine.workflows import export, import_file, load_document, publish
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.models.workflows import ImmutableVersionError, content_hash

pytestmark = [pytest.mark.engine, pytest.mark.django_db]


@pytest.fixture
def doc() -> dict[str, Any]:
    """A small valid definition (handlers registered at start-up)."""
    return {
        "name": "greeting",
        "title": "Say hello",
        "description": "A two-step test workflow.",
        "topology": "single",
        "start_at": "hello",
        "states": {
            "hello": {"type": "task", "handler": "demo.noop", "args": {"who": "world"}, "next": "done"},
            "done": {"type": "succeed"},
        },
    }


@pytest.fixture
def changed(doc) -> dict[str, Any]:
    other = copy.deepcopy(doc)
    other["states"]["hello"]["args"]["who"] = "everyone"
    return other


@pytest.fixture
def published(doc) -> WorkflowVersion:
    version, created = publish(doc)
    assert created
    return version


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def run_command(name: str, *args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


# --- publish ----------------------------------------------------------------------------------


def test_publish_creates_version_one_and_the_workflow(doc):
    version, created = publish(doc)
    assert created is True
    assert version.number == 1
    assert version.definition == doc
    assert version.content_hash == content_hash(doc)
    workflow = version.workflow
    assert (workflow.name, workflow.title, workflow.topology) == ("greeting", "Say hello", "single")
    assert workflow.description == "A two-step test workflow."
    assert workflow.draft == doc
    assert workflow.latest_version() == version


def test_publishing_the_same_content_again_returns_the_same_version(doc, published):
    again, created = publish(copy.deepcopy(doc))
    assert created is False
    assert again.pk == published.pk
    assert WorkflowVersion.objects.filter(workflow__name="greeting").count() == 1


def test_publishing_the_same_content_in_another_key_order_returns_the_same_version(doc, published):
    reordered = dict(reversed(list(doc.items())))
    reordered["states"] = dict(reversed(list(doc["states"].items())))
    again, created = publish(reordered)
    assert (again.pk, created) == (published.pk, False)


def test_changed_content_creates_the_next_version(changed, published):
    second, created = publish(changed)
    assert created is True
    assert second.number == 2
    assert second.workflow_id == published.workflow_id
    assert published.workflow.latest_version() == second
    published.refresh_from_db()
    assert published.definition["states"]["hello"]["args"] == {"who": "world"}


def test_republishing_an_older_content_returns_that_older_version(doc, changed, published):
    publish(changed)
    again, created = publish(doc)
    assert (again.number, created) == (1, False)
    assert WorkflowVersion.objects.count() == 2


def test_publish_refuses_an_invalid_definition_and_saves_nothing(doc):
    doc["states"]["hello"]["next"] = "nowhere"
    with pytest.raises(DefinitionError) as raised:
        publish(doc)
    assert [f.code for f in raised.value.findings] == ["unknown_target"]
    assert not Workflow.objects.exists()
    assert not WorkflowVersion.objects.exists()


def test_publish_needs_a_name_in_the_document_or_as_an_argument(doc):
    del doc["name"]
    with pytest.raises(DefinitionError, match="has no 'name'"):
        publish(doc)
    version, created = publish(doc, name="named_elsewhere")
    assert (version.workflow.name, version.number, created) == ("named_elsewhere", 1, True)


def test_publish_records_who_published(doc, django_user_model):
    user = django_user_model.objects.create_user("designer")
    version, _ = publish(doc, user=user)
    assert version.created_by == user


# --- immutability -------------------------------------------------------------------------------


def test_a_published_version_cannot_be_modified(published):
    published.definition = {**published.definition, "title": "tampered"}
    with pytest.raises(ImmutableVersionError, match="cannot change; publish a new version"):
        published.save()
    published.refresh_from_db()
    assert published.definition["title"] == "Say hello"


def test_a_published_version_cannot_be_deleted(published):
    with pytest.raises(ImmutableVersionError, match="cannot be deleted"):
        published.delete()
    assert WorkflowVersion.objects.filter(pk=published.pk).exists()


def test_a_new_version_object_computes_its_own_content_hash(doc):
    workflow = Workflow.objects.create(name="manual")
    version = WorkflowVersion(workflow=workflow, number=1, definition=doc, content_hash="forged")
    version.save()
    assert version.content_hash == content_hash(doc)


# --- content_hash ------------------------------------------------------------------------------


def test_content_hash_ignores_key_order_at_every_level():
    first = {"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}}
    second = {"b": {"y": "z", "x": [1, {"q": 2, "p": 1}]}, "a": 1}
    assert content_hash(first) == content_hash(second)
    assert len(content_hash(first)) == 64
    assert int(content_hash(first), 16) >= 0


@pytest.mark.parametrize(
    "other",
    [
        {"a": 2, "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}},
        {"a": 1, "b": {"x": [{"p": 1, "q": 2}, 1], "y": "z"}},   # list order matters
        {"a": "1", "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}},
        {"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}, "c": None},
    ],
)
def test_content_hash_changes_with_the_content(other):
    assert content_hash(other) != content_hash({"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}})


# --- load_document ------------------------------------------------------------------------------


def test_load_document_parses_yaml(doc):
    assert load_document(yaml.safe_dump(doc), "greeting.yaml") == doc


def test_load_document_parses_json_by_filename_or_by_its_first_brace(doc):
    text = json.dumps(doc, indent=2)
    assert load_document(text, "greeting.json") == doc
    assert load_document("\n  " + text) == doc


def test_load_document_parses_yaml_flow_style_in_a_yaml_file():
    text = "{name: flow, start_at: a, states: {a: {type: succeed}}}"
    assert load_document(text, "flow.yaml") == {"name": "flow", "start_at": "a", "states": {"a": {"type": "succeed"}}}


def only_syntax_finding(text: str, filename: str) -> Any:
    """Load text that must be refused, and return its single finding, which must be 'syntax'."""
    with pytest.raises(DefinitionError) as raised:
        load_document(text, filename)
    (finding,) = raised.value.findings
    assert finding.code == "syntax"
    return finding


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        ("name: x\nstates: [unclosed\n", "broken.yaml"),
        ("name: x\n  bad: indent\n", "broken.yml"),
        ('{"name": "x",}', "broken.json"),
        ('{"name": "x"', ""),
    ],
)
def test_broken_text_gives_a_syntax_finding_naming_the_file(text, filename):
    finding = only_syntax_finding(text, filename)
    assert finding.message.startswith(f"{filename or 'document'} does not parse: ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text", "", "42", "[1, 2]"])
def test_a_document_that_is_not_a_mapping_gives_a_syntax_finding(text):
    finding = only_syntax_finding(text, "x.yaml")
    assert "must be a mapping" in finding.message


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        ("name: x\nargs: {when: 2024-01-01}\n", "dated.yaml"),
        ("name: x\nlimit: .nan\n", "nan.yaml"),
        ('{"name": "x", "limit": NaN}', "nan.json"),
        ("name: x\nblob: !!binary aGVsbG8=\n", "binary.yaml"),
    ],
)
def test_values_json_cannot_hold_give_a_syntax_finding(text, filename):
    finding = only_syntax_finding(text, filename)
    assert filename in finding.message


def test_a_yaml_date_in_a_definition_is_refused_before_publishing(write_file, doc):
    text = yaml.safe_dump(doc).replace("who: world", "who: 2024-01-01")
    with pytest.raises(DefinitionError):
        import_file(write_file("dated.yaml", text))
    assert not WorkflowVersion.objects.exists()


# --- export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_round_trips_through_load_document(doc, published, fmt):
    text = export("greeting", fmt)
    assert load_document(text, f"greeting.{fmt}") == doc


@pytest.mark.parametrize("path", sorted(WORKFLOWS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_demo_workflow_round_trips(path: Path):
    original = load_document(path.read_text(encoding="utf-8"), path.name)
    version, _ = import_file(path)
    exported = load_document(export(version.workflow.name), "out.yaml")
    assert exported == original
    assert content_hash(exported) == version.content_hash


def test_export_picks_a_version_and_defaults_to_the_latest(doc, changed, published):
    publish(changed)
    assert load_document(export("greeting", version=1), "v1.yaml") == doc
    assert load_document(export("greeting"), "latest.yaml") == changed


def test_export_adds_the_workflow_name_when_the_definition_has_none(doc):
    del doc["name"]
    publish(doc, name="anonymous")
    assert load_document(export("anonymous"), "a.yaml") == {**doc, "name": "anonymous"}


def test_export_of_an_unknown_workflow_raises_workflow_not_found():
    with pytest.raises(WorkflowNotFound, match="no workflow named 'ghost'"):
        export("ghost")


def test_export_of_an_unknown_version_raises_workflow_not_found(published):
    with pytest.raises(WorkflowNotFound, match="no version 7"):
        export("greeting", version=7)


# --- import_workflow / export_workflow commands ---------------------------------------------------


def test_import_workflow_publishes_a_valid_file(write_file, doc):
    path = write_file("greeting.yaml", yaml.safe_dump(doc, sort_keys=False))
    assert run_command("import_workflow", str(path)) == "greeting: published version 1\n"
    assert Workflow.objects.get(name="greeting").latest_version().number == 1


def test_import_workflow_twice_says_it_is_unchanged(write_file, doc):
    path = write_file("greeting.json", json.dumps(doc))
    run_command("import_workflow", str(path))
    assert run_command("import_workflow", str(path)) == "greeting: unchanged, already published as version 1\n"


def test_import_workflow_of_the_demo_file_prints_published_version_1():
    path = WORKFLOWS_DIR / "noop_chain.yaml"
    assert run_command("import_workflow", str(path)) == "noop_chain: published version 1\n"


def test_import_workflow_of_an_invalid_file_lists_the_findings(write_file, doc):
    doc["states"]["hello"]["handler"] = "nope.missing"
    doc["states"]["orphan"] = {"type": "task", "handler": "demo.noop"}
    path = write_file("bad.yaml", yaml.safe_dump(doc))
    with pytest.raises(CommandError) as raised:
        run_command("import_workflow", str(path))
    message = str(raised.value)
    assert message.startswith(f"{path} is not a valid definition:\n")
    assert "  - state 'hello': handler 'nope.missing' is not registered" in message
    assert "  - state 'orphan': has no 'next'" in message
    assert not Workflow.objects.exists()


def test_import_workflow_of_unparseable_text_reports_the_syntax_error(write_file):
    path = write_file("broken.yaml", "states: [\n")
    with pytest.raises(CommandError, match="broken.yaml does not parse"):
        run_command("import_workflow", str(path))


def test_import_workflow_of_a_missing_file_is_a_command_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CommandError, match=f"no such file: {missing}"):
        run_command("import_workflow", str(missing))


def test_export_workflow_prints_the_definition(published, doc):
    assert load_document(run_command("export_workflow", "greeting"), "out.yaml") == doc
    assert json.loads(run_command("export_workflow", "greeting", format="json")) == doc


def test_export_workflow_of_an_unknown_name_is_a_command_error():
    with pytest.raises(CommandError, match="no workflow named 'ghost'"):
        run_command("export_workflow", "ghost")


def test_export_workflow_of_an_unknown_version_is_a_command_error(published):
    with pytest.raises(CommandError, match="no version 3"):
        run_command("export_workflow", "greeting", version=3)


def test_import_then_export_round_trips_a_file(write_file, doc):
    path = write_file("greeting.yaml", yaml.safe_dump(doc, sort_keys=False))
    run_command("import_workflow", str(path))
    exported = run_command("export_workflow", "greeting")
    # PostgreSQL's jsonb does not keep key order, so compare content, not text.
    assert load_document(exported, "out.yaml") == load_document(path.read_text(encoding="utf-8"), path.name)
