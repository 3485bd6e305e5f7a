"""A draft's source text: parsed with the line and column of any syntax error, and written back
with its key order and YAML comments kept (ruamel.yaml's round trip), so an edit made in the
panel changes only the lines it touches.

Why ruamel.yaml: it is the maintained YAML library that round-trips comments and key order;
PyYAML (the engine's loader) drops both.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

FORMATS = ("yaml", "json")


@dataclass(frozen=True)
class SourceError(Exception):
    """The text does not parse: where, and why."""

    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "") if self.line else ""
        return f"{where}: {self.message}" if where else self.message


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, key order and flow style kept
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def load(text: str, fmt: str) -> Any:
    """The document as a round-trip tree (YAML) or plain data (JSON); SourceError when it does
    not parse or is not a mapping."""
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; use yaml or json")
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(exc.msg, exc.lineno, exc.colno) from exc
    else:
        try:
            doc = _yaml().load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = " ".join(part for part in (exc.context, exc.problem) if part) or "not valid YAML"
            raise SourceError(message, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from exc
        except YAMLError as exc:
            raise SourceError(str(exc)) from exc
    if not isinstance(doc, dict):
        raise SourceError("a definition is a mapping (name, start_at, states, ...) at the top level", 1, 1)
    return doc


def plain(doc: Any) -> dict[str, Any]:
    """The document as plain JSON data (what the validator and the database hold); SourceError
    for values JSON cannot hold (YAML dates, NaN, binary)."""
    try:
        return json.loads(json.dumps(doc, allow_nan=False, default=_refuse))
    except (TypeError, ValueError) as exc:
        raise SourceError(f"a value JSON cannot hold: {exc}; quote dates and times, and use no NaN, "
                          "infinity or binary") from exc


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} {value!r}")


def dump(doc: Any, fmt: str) -> str:
    """The document as text in ``fmt``; a round-trip tree keeps its comments in YAML."""
    if fmt == "json":
        return json.dumps(plain(doc), indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def parse(text: str, fmt: str) -> dict[str, Any]:
    """Plain data from source text (SourceError when it does not parse)."""
    return plain(load(text, fmt))


def line_of_key(text: str, key: str) -> int | None:
    """The first line (1-based) where ``key`` is a mapping key, in YAML or JSON text."""
    name = re.escape(key)
    for pattern in (rf'^[ \t]*(?:"{name}"|\'{name}\'|{name})[ \t]*:', rf'"{name}"[ \t]*:'):
        found = re.search(pattern, text, re.M)
        if found:
            return text.count("\n", 0, found.start()) + 1
    return None
