"""A guard cannot execute code: guards are data (path, operator, value), never evaluated as Python.
Code written where a guard goes is refused when the workflow is validated, with a message that
says what a guard is; code hidden in a guard's path or value is only ever compared as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine import guards
from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import RunStatus

from ..engine.test_approvals import play

pytestmark = pytest.mark.django_db(transaction=True)


def routed(name: str, condition: object) -> dict:
    """A choice: its guard holding ends the run failed (``taken``), else it succeeds (``other``)."""
    return {"name": name, "start_at": "route", "states": {
        "route": {"type": "choice", "choices": [{"condition": condition, "next": "taken"}], "default": "other"},
        "taken": {"type": "fail", "error": "GuardHeld"}, "other": {"type": "succeed"}}}


def code_that_touches(marker: Path) -> dict[str, str]:
    return {
        "import and system": f"__import__('os').system('touch {marker}')",
        "lambda": f"(lambda: open('{marker}', 'w'))()",
        "comprehension": f"[open('{marker}', 'w') for _ in range(1)]",
        "dunder walk": f"().__class__.__base__.__subclasses__() or open('{marker}', 'w')",
        "f-string": f"f\"{{open('{marker}', 'w')}}\"",
    }


@pytest.mark.parametrize("kind", ["import and system", "lambda", "comprehension", "dunder walk", "f-string"])
def test_code_written_as_a_guard_is_refused_at_validation_and_never_run(kind, tmp_path):
    marker = tmp_path / "executed"
    code = code_that_touches(marker)[kind]
    assert guards.check(code) == ["condition: a condition must be an object, got str"]
    with pytest.raises(DefinitionError, match="condition"):
        publish(routed("guard_code", code))
    with pytest.raises(DefinitionError, match="condition"):
        publish(routed("guard_code", {"all": [{"path": "input.x", "op": "eq", "value": 1}, code]}))
    assert not marker.exists()


@pytest.mark.parametrize("op", ["__import__", "eval", "exec", "__eq__", "lambda", "system"])
def test_an_operator_that_is_not_in_the_table_is_refused(op):
    problems = guards.check({"path": "input.x", "op": op, "value": 1})
    assert problems and "unknown operator" in problems[0] and "use one of" in problems[0]
    with pytest.raises(DefinitionError, match="unknown operator"):
        publish(routed("guard_operator", {"path": "input.x", "op": op, "value": 1}))


def test_code_in_a_path_or_a_value_is_data_compared_as_text(tmp_path, redis_conn, sink_path, fast_engine):
    marker = tmp_path / "executed"
    code = code_that_touches(marker)["import and system"]
    publish(routed("guard_text", {"any": [
        {"path": code, "op": "exists", "value": True},
        {"path": "input.note", "op": "eq", "value": code},
        {"path": "input.__class__.__name__", "op": "eq", "value": "dict"},  # no attribute access: keys only
        {"path": "input.__len__", "op": "exists", "value": True},
    ]}))
    run = play(start_run("guard_text", {"note": "hello"})[0])
    assert run.status == RunStatus.SUCCEEDED  # the default branch: no condition held
    assert not marker.exists()
    # The same value, typed as text by the run's input, matches as text and nothing more.
    run = play(start_run("guard_text", {"note": code})[0])
    assert run.status == RunStatus.FAILED and "GuardHeld" in str(run.error) and not marker.exists()


def test_evaluate_reads_dict_keys_and_list_indexes_never_attributes():
    context = {"input": {"items": [1, 2]}}
    assert guards.evaluate({"path": "input.items.1", "op": "eq", "value": 2}, context)
    for path in ("input.__class__", "input.items.__len__", "input.keys", "input.items.append", "__builtins__"):
        assert not guards.evaluate({"path": path, "op": "exists", "value": True}, context), path
