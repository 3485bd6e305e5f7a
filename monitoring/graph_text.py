"""Text for Graphviz: node and cluster ids, user text made safe for dot's labels, tooltips and
links (STACK.md has the escaping pitfalls), and guard conditions written as short words."""

from __future__ import annotations

import html
import json
import re
import textwrap
import unicodedata
from typing import Any

import graphviz

EDGE_LABEL_WIDTH = 30  # characters a line; edge labels wrap over at most EDGE_LABEL_LINES lines
EDGE_LABEL_LINES = 3

SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}\Z")
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_SPACES = re.compile(r"\s+")


def node_id(state_name: str) -> str:
    """The SVG ``id`` of a state's node: ``state_<name>`` for names the validator accepts
    (``[A-Za-z_][A-Za-z0-9_]*``), ``statex_<utf-8 hex>`` for anything else. Never collides."""
    state_name = state_name if isinstance(state_name, str) else str(state_name)
    if SAFE_NAME.match(state_name):
        return f"state_{state_name}"
    return "statex_" + state_name.encode("utf-8", "surrogatepass").hex()


def cluster_id(state_name: str, branch_index: int) -> str:
    """The SVG ``id`` (and dot subgraph name) of a parallel's branch (in name order) or a map's
    iterator (index 0)."""
    return f"cluster_{node_id(state_name)}_{branch_index}"


def clean(value: Any, limit: int = 0) -> str:
    """User text made safe for dot: one line, no control characters, no backslashes (dot expands
    ``\\N``, ``\\G``... even inside HTML labels and tooltips), at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = _SPACES.sub(" ", _BAD_CHARS.sub(" ", text)).strip().replace("\\", "\u2216")
    text = unicodedata.normalize("NFC", text)
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def h(value: Any, limit: int = 0) -> str:
    """Text for inside an HTML-like label."""
    return escape(clean(value, limit))


def escape(text: str) -> str:
    # dot's HTML-label lexer rejects text starting with "]": write it as a character reference.
    return html.escape(text, quote=True).replace("]", "&#93;")


def tip(value: Any, limit: int = 400) -> str:
    """A tooltip: dot leaves entities alone and escapes the rest, so escaping first shows the text as given."""
    return graphviz.nohtml(html.escape(clean(value, limit), quote=True))


def url(value: Any) -> str | None:
    """An href from ``link()``: relative or http(s) only, HTML-escaped (dot copies URLs verbatim)."""
    if not isinstance(value, str) or not value.strip():
        return None
    if _BAD_CHARS.search(value):
        return None
    scheme = _SCHEME.match(value)
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        return None
    return html.escape(value.strip(), quote=True).replace("\\", "&#92;")


def wrapped(text: str, width: int = EDGE_LABEL_WIDTH, lines: int = EDGE_LABEL_LINES) -> list[str]:
    """Escaped lines of at most ``width`` characters (words kept whole where they fit), the last
    one cut with "…" when the text needs more than ``lines``."""
    parts = textwrap.wrap(clean(text), width, break_on_hyphens=False) or [""]
    if len(parts) > lines:
        parts = [*parts[: lines - 1], clean(" ".join(parts[lines - 1:]), width)]
    return [escape(part) for part in parts]


def html_label(*lines: str) -> str:
    return "<" + "<BR/>".join(line for line in lines if line) + ">"


def tag(tag: str, text: str) -> str:
    """``<TAG>text</TAG>``, or nothing for no text (dot rejects an empty element)."""
    return f"<{tag}>{text}</{tag}>" if text else ""


def small(text: str, size: int = 10) -> str:
    return f'<FONT POINT-SIZE="{size}">{text}</FONT>' if text else ""


# --- conditions ----------------------------------------------------------------------------------

_OPS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in", "not_in": "not in",
        "contains": "contains", "starts_with": "starts with", "ends_with": "ends with"}


def value_text(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 24 else text[:23] + "…"


def condition_text(condition: Any, *, nested: bool = False) -> str:
    """A short readable form of a guard: ``validate.total >= 500``; ``all``/``any`` become
    ``and``/``or`` (beyond two parts: ``and 3 more``), ``not`` prefixes."""
    if not isinstance(condition, dict):
        return "?"
    for key, word in (("all", "and"), ("any", "or")):
        if key in condition:
            parts = condition[key] if isinstance(condition[key], list) else []
            shown = [condition_text(part, nested=True) for part in parts[:2]]
            if len(parts) > 2:
                shown.append(f"{len(parts) - 2} more")
            text = f" {word} ".join(shown) or "?"
            return f"({text})" if nested and len(shown) > 1 else text
    if "not" in condition:
        return "not " + condition_text(condition["not"], nested=True)
    path = condition.get("path", "?")
    op = condition.get("op", "?")
    value = condition.get("value", True)
    if op == "exists":
        return f"{path} {'exists' if value else 'is missing'}"
    if op == "is_null":
        return f"{path} {'is null' if value else 'is not null'}"
    return f"{path} {_OPS.get(op, op)} {value_text(value)}"


def full_condition(condition: Any) -> str:
    try:
        return json.dumps(condition, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(condition)
