"""Typed contracts at a state's boundary: the input it receives and the output it hands on.

A state may declare ``input`` (a mapping of names to paths into its line's context: it
receives only those), ``input_schema`` and ``output_schema`` (JSON Schemas). A path that
holds nothing, or a value of the wrong shape, fails the attempt with failure mode
``context_loss`` and a message naming the field, rather than passing a half-filled input on.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from . import guards
from .definition import Definition, State
from .errors import ContractViolation, InputInvalid

_MISSING = object()


def mapped_input(state: State, seen: dict[str, Any]) -> Any:
    """What a state receives: its ``input`` mapping over the context (a missing path leaves its
    name out, for ``check_input`` to report), else the value at ``input_path`` (``input``)."""
    if state.input_map is None:
        return guards.get_path(seen, state.input_path or "input")
    values = {}
    for name, path in state.input_map.items():
        value = guards.get_path(seen, path, default=_MISSING)
        if value is not _MISSING:
            values[name] = value
    return values


def check_input(state: State, value: Any) -> None:
    if state.input_map is not None and isinstance(value, dict):
        for name, path in state.input_map.items():
            if name not in value:
                raise ContractViolation(
                    f"state '{state.name}' expects input field '{name}' from context path '{path}', "
                    "which holds nothing: neither the run's input nor an earlier state provided it")
    _check(state.input_schema, value, f"state '{state.name}' received input that breaks its input_schema")


def output_value(state: State, output: Any) -> Any:
    """What an output contract checks: a task's output; an agent's answer (parsed if JSON)."""
    if state.type == "agent" and isinstance(output, dict):
        return output["data"] if output.get("data") is not None else output.get("content")
    return output


def check_output(state: State, output: Any) -> None:
    _check(state.output_schema, output_value(state, output),
           f"state '{state.name}' produced output that breaks its output_schema")


def _check(schema: dict[str, Any] | None, value: Any, what: str) -> None:
    if schema is None:
        return
    error = best_match(Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the whole value)"
        raise ContractViolation(f"{what}: at {where}: {error.message}")


def check_run_input(definition: Definition, value: Any) -> None:
    """A run's input against its workflow's ``input_schema``: every faulty field, by path."""
    if definition.input_schema is None:
        return
    fields: dict[str, str] = {}
    for error in sorted(Draft202012Validator(definition.input_schema).iter_errors(value),
                        key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            for name in missing:
                fields.setdefault(f"{path}.{name}" if path else name, "is required")
            continue
        fields.setdefault(path or "(input)", error.message)
    if fields:
        raise InputInvalid(fields)
