"""The JSON Schema of a workflow definition document (structure only; see validator.py)."""

from __future__ import annotations

from typing import Any

from .approval_spec import APPROVAL_PROPERTIES, GATE_SCHEMA

STATE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
BUILT_STATE_TYPES = ["task", "agent", "handoff", "subworkflow", "choice", "wait", "parallel", "map", "approval",
                     "succeed", "fail"]
PROVIDERS = ["offline", "openai"]
JOIN_MODES = ["all", "quorum", "first"]
REDUCER_STRATEGIES = ["collect", "merge", "highest_score", "majority_vote", "custom"]
CONFLICT_POLICIES = ["error", "prefer_first", "prefer_last", "vote"]

_retry = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "errors": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
        "interval_seconds": {"type": "number", "minimum": 0},
        "backoff_rate": {"type": "number", "minimum": 1},
        "max_interval_seconds": {"type": "number", "minimum": 0},
        "jitter": {"type": "boolean"},
    },
}
_catch = {
    "type": "object",
    "additionalProperties": False,
    "required": ["next"],
    "properties": {
        "errors": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "next": {"type": "string"},
        "requires_approval": GATE_SCHEMA,
    },
}
_common = {
    "type": {"enum": BUILT_STATE_TYPES},
    "comment": {"type": "string"},
    "title": {"type": "string"},
}
# Typed contracts (contracts.py): what a state receives (names -> context paths), and the
# JSON Schemas its input and output must satisfy.
_contract = {
    "input": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
    "input_schema": {"type": "object"},
    "output_schema": {"type": "object"},
}
_task = {
    **_common,
    **_contract,
    "handler": {"type": "string", "minLength": 1},
    "next": {"type": "string"},
    "end": {"type": "boolean"},
    "args": {"type": "object"},
    "input_path": {"type": "string"},
    "result_path": {"type": "string", "pattern": STATE_NAME},
    "queue": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
    "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0},
    "retry": {"type": "array", "items": _retry},
    "catch": {"type": "array", "items": _catch},
    # A person approves the transition out of this state (approval_spec.py).
    "requires_approval": GATE_SCHEMA,
}
_agent = {
    **{key: value for key, value in _task.items() if key != "handler"},
    "provider": {"enum": PROVIDERS},
    "model": {"type": "string", "minLength": 1},
    "instructions": {"type": "string"},
    "tools": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
    "routes": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
}
_handoff = {
    **_common,
    "to": {"type": "string"},
    "input": _contract["input"],
    "input_schema": _contract["input_schema"],
}
_subworkflow = {
    # No timeout or heartbeat: the attempt holds no worker while the child runs, and the
    # child's own deadline (its definition's, or the default in settings) bounds the wait.
    **{key: value for key, value in _task.items() if key not in ("handler", "heartbeat_seconds", "timeout_seconds")},
    "workflow": {"type": "string", "pattern": r"^[-a-zA-Z0-9_]{1,100}$"},
    "version": {"type": "integer", "minimum": 1},
}
_choice = {
    **_common,
    "choices": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["condition", "next"],
            "properties": {"condition": {"type": "object"}, "next": {"type": "string"},
                           "requires_approval": GATE_SCHEMA},
        },
    },
    "default": {"type": "string"},
}
_wait = {
    **_common,
    "seconds": {"type": "number", "minimum": 0},
    "seconds_path": {"type": "string"},
    "next": {"type": "string"},
    "end": {"type": "boolean"},
    "requires_approval": GATE_SCHEMA,
}
# A manual transition: the line waits for a person (approval_spec.py); approve goes to ``next``.
_approval = {
    **_common,
    **APPROVAL_PROPERTIES,
    "next": {"type": "string"},
    "end": {"type": "boolean"},
    "result_path": {"type": "string", "pattern": STATE_NAME},
}
# A branch of a parallel state, or a map's iterator: a graph of its own (its queue is the
# default of its states).
_sub_graph = {
    "type": "object",
    "additionalProperties": False,
    "required": ["start_at", "states"],
    "properties": {
        "start_at": {"type": "string"},
        "states": {"$ref": "#/$defs/states"},
        "queue": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
    },
}
_parallel = {
    **_common,
    "branches": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": STATE_NAME},
        "additionalProperties": _sub_graph,
    },
    "join": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": JOIN_MODES},
            "count": {"type": "integer", "minimum": 1},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        },
    },
    "reducer": {
        "type": "object",
        "additionalProperties": False,
        "required": ["strategy"],
        "properties": {
            "strategy": {"enum": REDUCER_STRATEGIES},
            "handler": {"type": "string", "minLength": 1},
            "path": {"type": "string"},
            "on_conflict": {"enum": CONFLICT_POLICIES},
        },
    },
    "result_path": {"type": "string", "pattern": STATE_NAME},
    "next": {"type": "string"},
    "end": {"type": "boolean"},
    "catch": {"type": "array", "items": _catch},
    "requires_approval": GATE_SCHEMA,
}
_map = {
    **_common,
    "items_path": {"type": "string", "minLength": 1},
    "iterator": _sub_graph,
    "max_concurrency": {"type": "integer", "minimum": 1},
    "tolerated_failure_percentage": {"type": "number", "minimum": 0, "maximum": 100},
    "reducer": _parallel["reducer"],
    "result_path": {"type": "string", "pattern": STATE_NAME},
    "next": {"type": "string"},
    "end": {"type": "boolean"},
    "catch": {"type": "array", "items": _catch},
    "requires_approval": GATE_SCHEMA,
}
_succeed = {**_common, "output_path": {"type": "string"}}
_fail = {**_common, "error": {"type": "string"}, "cause": {"type": "string"}}


def _typed(type_name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "if": {"properties": {"type": {"const": type_name}}, "required": ["type"]},
        "then": {"properties": properties, "required": ["type", *required], "additionalProperties": False},
    }


DEFINITION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Ratchet workflow definition",
    "type": "object",
    "additionalProperties": False,
    "required": ["start_at", "states"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[-a-zA-Z0-9_]{1,100}$"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "topology": {"enum": ["single", "pipeline", "supervisor_worker", "network"]},
        "start_at": {"type": "string"},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "input_schema": {"type": "object"},
        "sample_input": {},
        "budgets": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_steps": {"type": "integer", "minimum": 1},
                "max_tokens": {"type": "integer", "minimum": 1},
                "max_cost": {"type": "number", "exclusiveMinimum": 0},
                "max_depth": {"type": "integer", "minimum": 1},
                "max_parallel_agents": {"type": "integer", "minimum": 1},
            },
        },
        "states": {"$ref": "#/$defs/states"},
    },
    "$defs": {
        "states": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": STATE_NAME},
            "additionalProperties": {
                "type": "object",
                "required": ["type"],
                "allOf": [
                    _typed("task", _task, ["handler"]),
                    _typed("agent", _agent, []),
                    _typed("handoff", _handoff, ["to", "input"]),
                    _typed("subworkflow", _subworkflow, ["workflow"]),
                    _typed("choice", _choice, ["choices"]),
                    _typed("wait", _wait, []),
                    _typed("parallel", _parallel, ["branches"]),
                    _typed("map", _map, ["items_path", "iterator"]),
                    _typed("approval", _approval, []),
                    _typed("succeed", _succeed, []),
                    _typed("fail", _fail, []),
                ],
                "properties": {"type": _common["type"]},
            },
        },
    },
}
