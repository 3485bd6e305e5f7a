"""A workflow definition drawn as an inline SVG by Graphviz's ``dot``.

    svg = render_svg(definition, marks={"charge": StateMark.CURRENT}, selected="charge",
                     link=lambda name: f"?state={name}")

What the picture means (``legend_items()`` lists the same, for the page to draw as HTML):

* every state is one node whose *shape* and *fill* say its type, and whose label says it in
  words too (``task · demo.charge``); the run's first state has an edge from a dark "start"
  node; succeed and fail states have double outlines; states that end the run with
  ``end: true`` point to a dark "end" node;
* a parallel state's branches and a map's iterator are clusters labelled with the branch name
  (and ``counts``); the parallel/map node forks into them and a small "join" node gathers them:
  the state's ``next`` and ``catch`` edges leave from the join, because that is when they fire;
* edges: ``next`` plain; choice rules labelled with the condition (``total >= 500``); the
  choice default labelled "default"; ``catch`` dashed and labelled with the errors; agent
  ``routes`` dashed, labelled "route"; handoffs labelled "handoff";
* ``marks`` (a run's view) fill a state with its status colour, change its outline pattern
  and add "status: <word>" to its label, so nothing is said by colour alone; states without a
  mark are drawn white (not reached);
* ``selected`` draws one node with a thick dark-blue outline.

Escaping: nothing the definition says reaches dot's input unescaped. Labels are HTML-like
labels built here with ``html.escape``; tooltips are escaped the same way (dot keeps entities);
backslashes, which dot expands (``\\N``, ``\\G``, ``\\l``) even inside HTML labels and tooltips, are
shown as U+2216 "∖"; control characters become spaces; ids and classes are built only from
``[A-Za-z0-9_]``; hrefs come from ``link(name)``, are refused unless relative or http(s), and are
HTML-escaped because dot copies them verbatim.

Rendering is cached (LRU) by the definition's content, ``marks``, ``counts``, ``selected`` and the
hrefs ``link`` produces: the same inputs give the very same string object back (a second LRU,
by dot source, catches different inputs that draw the same graph).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from html import unescape
from typing import Any

import graphviz
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from orchestrator.engine.definition import Definition, State

from .graph_looks import (
    _DOT_SHAPES,
    EDGE_LOOKS,
    END_LOOK,
    HIGHLIGHT_LOOKS,
    HIGHLIGHT_PENWIDTH,
    JOIN_LOOK,
    MISSING_LOOK,
    SELECTED_COLOR,
    SELECTED_PENWIDTH,
    START_LOOK,
    STATUS_LOOKS,
    TYPE_LOOKS,
    UNKNOWN_LOOK,
    UNREACHED_FILL,
    LegendItem,
    StateMark,
    legend_items,
    legend_swatch,
)
from .graph_text import (
    SAFE_NAME,
    cluster_id,
    condition_text,
    full_condition,
    h,
    html_label,
    node_id,
    small,
    tag,
    tip,
    url,
    wrapped,
)

__all__ = [
    "GraphRenderError",
    "LegendItem",
    "StateMark",
    "clear_cache",
    "cluster_id",
    "condition_text",
    "legend_items",
    "legend_swatch",
    "node_id",
    "render_svg",
    "to_dot",
]

CACHE_SIZE = 128
DOT_TIMEOUT_SECONDS = 20
FONT = "Helvetica"


class GraphRenderError(RuntimeError):
    """dot is missing, failed, or took too long."""


def _shape(name: str) -> dict[str, str]:
    return _DOT_SHAPES.get(name, {"shape": name})


# ---------------------------------------------------------------------------------------------
# Building the dot source


@dataclass(frozen=True)
class _Edge:
    source: str  # node id
    target: str  # state name
    kind: str
    label: str = ""
    tooltip: str = ""


def _detail(state: State) -> str:
    """The second line of a node: the type in words and what it runs."""
    t = state.type
    if t == "task":
        return f"task · {state.handler or '?'}"
    if t == "agent":
        tools = f" · {len(state.tools)} tool{'s' if len(state.tools) != 1 else ''}" if state.tools else ""
        return f"agent · {state.model or state.provider or '?'}{tools}"
    if t == "handoff":
        return f"handoff to {state.to or '?'}"
    if t == "subworkflow":
        version = f" v{state.version}" if state.version else ""
        return f"sub-workflow · {state.workflow or '?'}{version}"
    if t == "wait":
        if state.seconds is not None:
            return f"wait {_number(state.seconds)} s"
        return f"wait until {state.seconds_path}" if state.seconds_path else "wait"
    if t == "parallel":
        n = len(state.branches)
        join = state.join.mode if state.join.mode == "all" else f"{state.join.mode} {_needed(state)}"
        return f"parallel · {n} branch{'es' if n != 1 else ''} · join {join}"
    if t == "map":
        over = f" over {state.items_path}" if state.items_path else ""
        at_once = f" · {state.max_concurrency} at once" if state.max_concurrency else ""
        return f"map{over}{at_once}"
    if t == "fail":
        return f"fail · {state.error}" if state.error else "fail"
    if t == "approval" and state.approval is not None:
        return f"approval · {', '.join(state.approval.approvers.groups) or 'approvers'}"
    return t


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _needed(state: State) -> str:
    """How many branches a quorum/first join waits for (a draft may say something odd)."""
    try:
        return str(state.join.needed(len(state.branches)))
    except TypeError:
        return str(state.join.count)


def _title(state: State) -> str:
    raw = state.raw if isinstance(state.raw, dict) else {}
    return raw.get("title") if isinstance(raw.get("title"), str) else ""


def _tooltip_text(state: State, mark: StateMark | None, count: str | None) -> str:
    raw = state.raw if isinstance(state.raw, dict) else {}
    parts = [f"{state.name} ({state.type})", _detail(state)]
    if _title(state):
        parts.append(_title(state))
    if isinstance(raw.get("comment"), str) and raw["comment"]:
        parts.append(raw["comment"])
    if state.type == "agent" and state.tools:
        parts.append("tools: " + ", ".join(state.tools))
    if state.type in ("parallel", "map") and state.reducer.strategy != "collect":
        parts.append(f"reducer: {state.reducer.strategy}")
    if state.type == "fail" and state.cause:
        parts.append(f"cause: {state.cause}")
    if count:
        parts.append(count)
    if mark:
        parts.append(f"status: {mark}")
    return " — ".join(str(p) for p in parts)


GATE_LABEL = "needs approval"


def _edges(state: State, source: str) -> Iterator[_Edge]:
    """Every transition out of ``state``, drawn from node ``source``."""
    name = state.name
    gated = " (a person approves it first)" if state.gate is not None else ""
    if state.next:
        kind, label = ("gate", GATE_LABEL) if gated else ("next", "approve" if state.approval else "")
        yield _Edge(source, state.next, kind, label, f"{name} → {state.next}{gated}")
    numbered = len(state.choices) > 1
    for i, rule in enumerate(state.choices, 1):
        summary = condition_text(rule.condition)
        label = f"{i}. {summary}" if numbered else summary
        held = rule.gate is not None
        yield _Edge(source, rule.next, "gate" if held else "choice", f"{label}, {GATE_LABEL}" if held else label,
                    f"{name} → {rule.next}: rule {i}, when {full_condition(rule.condition)}"
                    + (" (a person approves it first)" if held else ""))
    if state.default:
        yield _Edge(source, state.default, "default", "default", f"{name} → {state.default}: when no rule matches")
    for rule in state.catch:
        errors = ", ".join("any error" if e == "*" else str(e) for e in rule.errors) or "any error"
        held = rule.gate is not None
        yield _Edge(source, rule.next, "gate" if held else "catch",
                    f"catch {errors}, {GATE_LABEL}" if held else f"catch {errors}",
                    f"{name} → {rule.next}: on {errors}" + (" (a person approves it first)" if held else ""))
    for route in state.routes:
        yield _Edge(source, route, "gate" if gated else "route", f"route, {GATE_LABEL}" if gated else "route",
                    f"{name} → {route}: agent route{gated}")
    if state.to:
        yield _Edge(source, state.to, "handoff", "handoff", f"{name} → {state.to}: handoff")
    for spec in (state.approval, state.gate, *(rule.gate for rule in (*state.choices, *state.catch))):
        if spec is None:
            continue
        if spec.reject_to:
            yield _Edge(source, spec.reject_to, "reject", "reject", f"{name} → {spec.reject_to}: when rejected")
        for outcome, target in spec.labelled:
            yield _Edge(source, target, "outcome", outcome, f"{name} → {target}: outcome {outcome}")


class _Builder:
    def __init__(self, definition: Definition, inputs: _Inputs) -> None:
        self.definition = definition
        self.states = definition.states
        self.marks = inputs.marks
        self.counts = inputs.counts
        self.selected = inputs.selected
        self.hrefs = inputs.hrefs
        self.highlights = inputs.highlights
        self.new_edges = inputs.new_edges
        self.removed_edges = inputs.removed_edges
        self.run_view = inputs.marks is not _NO_MARKS
        self.edges: list[_Edge] = []
        self.missing: set[str] = set()
        self.placed: set[str] = set()
        self.needs_end = False
        # scope -> states in that scope (document order); "" is the top level.
        self.by_scope: dict[str, list[State]] = {}
        for state in self.states.values():
            self.by_scope.setdefault(state.scope, []).append(state)

    def build(self) -> graphviz.Digraph:
        g = graphviz.Digraph("workflow")
        g.attr("graph", rankdir="TB", nodesep="0.35", ranksep="0.45", fontname=FONT, fontsize="11", pad="0.1")
        g.attr("node", fontname=FONT, fontsize="12", margin="0.12,0.05")
        g.attr("edge", fontname=FONT, fontsize="10", arrowsize="0.7")
        start = self.definition.start_at
        g.node("graph_start", label="<start>", tooltip="start of the run", id="graph_start", shape="oval",
               style="filled", fillcolor=START_LOOK.fill, color=START_LOOK.stroke, fontcolor=START_LOOK.fontcolor,
               fontsize="10", height="0.3", **{"class": "marker marker_start"})
        self.edges.append(_Edge("graph_start", start, "next", "", f"start → {start}"))
        self._scope(g, "")
        # States whose scope names no branch (a malformed draft) still get drawn, at the top.
        for state in self.states.values():
            if state.name not in self.placed:
                self._state(g, state)
        if self.needs_end:
            g.node("graph_end", label="<end>", tooltip="end of the run", id="graph_end", shape="oval",
                   style="filled", fillcolor=END_LOOK.fill, color=END_LOOK.stroke, fontcolor=END_LOOK.fontcolor,
                   peripheries="2", fontsize="10", height="0.3", **{"class": "marker marker_end"})
        self.edges += [_Edge(source, target, "removed", "removed", f"{source} → {target}: removed")
                       for source, target in self.removed_edges]
        for edge in self.edges:
            self._edge(g, edge)
        for name in sorted(self.missing):
            g.node(f"missing_{node_id(name)}", label=html_label(h(f"missing state: {name}", 60)),
                   tooltip=tip(f"no state is called {name}"), shape=MISSING_LOOK.shape, style="dashed",
                   color=MISSING_LOOK.stroke, fontcolor=MISSING_LOOK.fontcolor, id=f"missing_{node_id(name)}",
                   **{"class": "missing"})
        return g

    def _scope(self, g: graphviz.Digraph, scope: str) -> None:
        for state in self.by_scope.get(scope, []):
            self._state(g, state)

    def _state(self, g: graphviz.Digraph, state: State) -> None:
        if state.name in self.placed:
            return
        self.placed.add(state.name)
        name = state.name
        nid = node_id(name)
        mark = self.marks.get(name)
        count = self.counts.get(name)
        type_name = state.type if isinstance(state.type, str) else "unknown"
        look = TYPE_LOOKS.get(type_name, UNKNOWN_LOOK)
        lines = [tag("B", h(name, 60)) or "(no name)", small(h(_detail(state), 48))]
        if _title(state):
            lines.append(small(tag("I", h(_title(state), 48))))
        if count:
            lines.append(small(tag("B", h(count, 40))))
        if mark:
            lines.append(f"<B>status: {h(mark)}</B>")
        if name in self.highlights:
            lines.append(f"<B>{h(HIGHLIGHT_LOOKS[self.highlights[name]].words)}</B>")
        styles = [w for w in look.style.split(",") if w]
        attrs: dict[str, Any] = {
            "id": nid, **_shape(look.shape), "color": look.stroke, "fillcolor": look.fill,
            "fontcolor": look.fontcolor, "penwidth": f"{look.penwidth:g}",
            "tooltip": tip(_tooltip_text(state, mark, count)),
        }
        if look.peripheries > 1:
            attrs["peripheries"] = str(look.peripheries)
        classes = ["state", f"type_{type_name}" if SAFE_NAME.match(type_name) else "type_unknown"]
        if self.run_view:
            attrs["fillcolor"] = UNREACHED_FILL
        if mark:
            status = STATUS_LOOKS[mark]
            attrs.update(fillcolor=status.fill, color=status.stroke, fontcolor=status.fontcolor,
                         penwidth=f"{status.penwidth:g}")
            styles = [w for w in styles if w not in ("dashed", "dotted", "bold", "solid")] + [status.style]
            classes.append(f"status_{mark}")
        if name in self.highlights:
            kind = self.highlights[name]
            highlight = HIGHLIGHT_LOOKS[kind]
            attrs.update(color=highlight.stroke, penwidth=f"{HIGHLIGHT_PENWIDTH:g}")
            styles = [w for w in styles if w not in ("dashed", "dotted", "bold", "solid")] + [highlight.style]
            classes.append(kind)
        if name == self.selected:
            attrs.update(color=SELECTED_COLOR, penwidth=f"{SELECTED_PENWIDTH:g}")
            classes.append("selected")
        if name == self.definition.start_at:
            classes.append("start_at")
        attrs["style"] = ",".join(["filled", *styles])
        attrs["class"] = " ".join(classes)
        href = self.hrefs.get(name)
        if href:
            attrs["URL"] = graphviz.nohtml(href)
        g.node(nid, label=html_label(*lines), **attrs)

        if state.branches and state.type in ("parallel", "map"):
            self._fork(g, state)
            return
        if state.end and not state.is_terminal:
            self._end(state, nid)
        self.edges.extend(_edges(state, nid))

    def _end(self, state: State, source: str) -> None:
        """``end: true``: the end of the run at the top level, the end of the branch inside one."""
        parent = self._parent(state)
        if parent is None:
            self.needs_end = True
            gated = state.gate is not None
            self.edges.append(_Edge(source, "", "end", GATE_LABEL if gated else "",
                                    f"{state.name} → end of the run" + (" (a person approves it first)" if gated
                                                                         else "")))
        else:
            self.edges.append(_Edge(source, f"join_{node_id(parent.name)}", "join", "",
                                    f"{state.name}: branch finished, to the join of {parent.name}"))

    def _parent(self, state: State) -> State | None:
        owner = state.scope.split("/", 1)[0] if state.scope else ""
        parent = self.states.get(owner)
        return parent if parent is not None and parent.branches else None

    def _fork(self, g: graphviz.Digraph, state: State) -> None:
        """A parallel's branches (or a map's iterator) as clusters, then a join node that the
        state's own transitions leave from."""
        nid = node_id(state.name)
        join = f"join_{nid}"
        is_map = state.type == "map"
        for i, branch in enumerate(state.branches):
            scope = f"{state.name}/{branch.name}"
            cid = cluster_id(state.name, i)
            count = self.counts.get(scope) or (self.counts.get(state.name) if is_map else None)
            if is_map:
                heading = f"<B>each item</B> of {h(state.name, 40)}"
            else:
                heading = tag("B", h(branch.name, 40)) or "branch"
            label = html_label(heading + (" · " + h(count, 40) if count else ""))
            kind = "iterator" if is_map else "branch"
            with g.subgraph(name=cid) as sub:
                sub.attr(label=label, id=cid, tooltip=tip(f"{kind} {branch.name} of {state.name}"
                                                           + (f" — {count}" if count else "")),
                         style="rounded,dashed" if is_map else "rounded", color="#9aa0a6", fontcolor="#3c4043",
                         labeljust="l", fontsize="11", **{"class": f"cluster_{kind}"})
                self._scope(sub, scope)
            self.edges.append(_Edge(nid, branch.start_at, "fork", "", f"{state.name} → {kind} {branch.name}"))
            for inner_name in branch.states:
                inner = self.states.get(inner_name)
                if inner is not None and inner.type == "succeed":
                    self.edges.append(_Edge(node_id(inner_name), join, "join", "",
                                            f"{inner_name}: branch finished, to the join of {state.name}"))
        if is_map:
            join_text = "join items"
            if state.tolerated_failure_percentage:
                join_text += f" · {_number(state.tolerated_failure_percentage)}% may fail"
        else:
            n = len(state.branches)
            join_text = "join all"
            if state.join.mode != "all":
                join_text = f"join {state.join.mode}: {_needed(state)} of {n}"
        g.node(join, label=html_label(small(h(join_text, 40))), tooltip=tip(f"join of {state.name}: {join_text}"),
               id=join, **_shape(JOIN_LOOK.shape), style="filled", fillcolor=JOIN_LOOK.fill, color=JOIN_LOOK.stroke,
               fontcolor=JOIN_LOOK.fontcolor, height="0.3", margin="0.05,0.02", **{"class": "join"})
        if state.end:
            self._end(state, join)
        self.edges.extend(_edges(state, join))

    def _edge(self, g: graphviz.Digraph, edge: _Edge) -> None:
        if edge.kind == "end":
            target = "graph_end"
        elif edge.kind == "join":
            target = edge.target
        elif edge.target in self.states:
            target = node_id(edge.target)
        else:
            self.missing.add(edge.target)
            target = f"missing_{node_id(edge.target)}"
        look = EDGE_LOOKS.get(edge.kind, EDGE_LOOKS["next"])
        attrs: dict[str, Any] = {"tooltip": tip(edge.tooltip), "class": f"edge_{edge.kind}"}
        if look.style != "solid":
            attrs["style"] = look.style
        if look.color != EDGE_LOOKS["next"].color:
            attrs["color"] = look.color
            attrs["fontcolor"] = look.color
        label = edge.label
        if (edge.source, edge.target) in self.new_edges:
            added = HIGHLIGHT_LOOKS["added"].stroke
            attrs.update(color=added, fontcolor=added, penwidth="2.5", style="bold")
            attrs["class"] += " edge_added"
            label = f"new: {label}" if label else "new"
        lines = wrapped(label) if label else []
        if any(lines):
            attrs["label"] = html_label(*lines)
            attrs["labeltooltip"] = tip(edge.tooltip)
        g.edge(edge.source, target, **attrs)


_NO_MARKS: Mapping[str, StateMark] = {}


@dataclass(frozen=True)
class _Inputs:
    """render_svg's arguments, normalised; ``key`` is what the SVG depends on besides the definition."""

    marks: Mapping[str, StateMark]
    counts: Mapping[str, str]
    selected: str | None
    hrefs: Mapping[str, str | None]
    highlights: Mapping[str, str] = field(default_factory=dict)
    new_edges: frozenset[tuple[str, str]] = frozenset()  # (source node id, target state name)
    removed_edges: tuple[tuple[str, str], ...] = ()  # drawn besides the definition's own

    @classmethod
    def of(cls, definition: Definition, marks: Mapping[str, StateMark | str] | None,
           counts: Mapping[str, str] | None, selected: str | None, link: Callable[[str], str] | None,
           highlights: Mapping[str, str] | None = None,
           new_edges: Iterable[tuple[str, str]] = (), removed_edges: Iterable[tuple[str, str]] = ()) -> _Inputs:
        unknown = set((highlights or {}).values()) - set(HIGHLIGHT_LOOKS)
        if unknown:
            raise ValueError(f"unknown highlight(s) {sorted(unknown)}; use {', '.join(HIGHLIGHT_LOOKS)}")
        return cls(
            marks=_NO_MARKS if marks is None else {name: StateMark(value) for name, value in marks.items()},
            counts={str(k): str(v) for k, v in (counts or {}).items()},
            selected=selected,
            hrefs={} if link is None else {name: url(link(name)) for name in definition.states},
            highlights=dict(highlights or {}),
            new_edges=frozenset(("graph_start" if source == "start" else node_id(source), target)
                                for source, target in new_edges),
            removed_edges=tuple(sorted(("graph_start" if source == "start" else node_id(source), target)
                                       for source, target in removed_edges)),
        )

    def key(self) -> tuple[Any, ...]:
        marks = None if self.marks is _NO_MARKS else tuple(sorted(self.marks.items()))
        return (marks, tuple(sorted(self.counts.items())), self.selected, tuple(self.hrefs.items()),
                tuple(sorted(self.highlights.items())), tuple(sorted(self.new_edges)), self.removed_edges)


def to_dot(definition: Definition, *, marks: Mapping[str, StateMark | str] | None = None,
           counts: Mapping[str, str] | None = None, selected: str | None = None,
           link: Callable[[str], str] | None = None) -> str:
    """The dot source ``render_svg`` draws (same arguments). Raises ValueError on an unknown mark."""
    return _Builder(definition, _Inputs.of(definition, marks, counts, selected, link)).build().source


def render_svg(definition: Definition, *, marks: Mapping[str, StateMark | str] | None = None,
               counts: Mapping[str, str] | None = None, selected: str | None = None,
               link: Callable[[str], str] | None = None, highlights: Mapping[str, str] | None = None,
               new_edges: Iterable[tuple[str, str]] = (), removed_edges: Iterable[tuple[str, str]] = ()) -> str:
    """The definition as an SVG element to embed in a page (no XML prolog, DOCTYPE or comments).

    ``marks``: state name -> ``StateMark`` (or its value) for a run's view; an empty dict still
    means "a run's view": states without a mark are drawn white. ``counts``: state name (or
    ``"<parallel>/<branch>"``) -> short text shown in the node or branch cluster label, such as
    ``"3/3 joined"`` or ``"812/1000"``. ``selected``: the state drawn with a thick outline.
    ``link``: state name -> href (relative or http(s); anything else is dropped), called once
    per state on every call (the hrefs are part of the cache key). ``highlights``: state name ->
    "problem" (the designer's findings), "added" or "changed" (a diff between versions), each
    drawn with its outline colour and its words. ``new_edges``: (source state, or "start", and
    target) transitions drawn thick green and labelled "new" (a diff); ``removed_edges``:
    transitions the definition no longer has, drawn dashed red and labelled "removed".

    Cached (LRU of ``CACHE_SIZE``) by (definition content, marks, counts, selected, hrefs): equal
    inputs return the same string object, in about 0.1 ms. Definitions are taken as immutable
    (the engine never changes one): the content fingerprint is kept per definition object.
    Raises ValueError on an unknown mark, GraphRenderError when dot fails (not cached)."""
    inputs = _Inputs.of(definition, marks, counts, selected, link, highlights, new_edges, removed_edges)
    key = (_fingerprint(definition), *inputs.key())
    with _LOCK:
        svg = _SVGS.get(key)
        if svg is not None:
            _SVGS.move_to_end(key)
            return svg
    svg = _render(_Builder(definition, inputs).build().source)
    with _LOCK:
        _SVGS[key] = svg
        while len(_SVGS) > CACHE_SIZE:
            _SVGS.popitem(last=False)
    return svg


def clear_cache() -> None:
    with _LOCK:
        _SVGS.clear()
    _render.cache_clear()


_LOCK = threading.Lock()
_SVGS: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_FINGERPRINTS: dict[int, tuple[weakref.ref[Definition], str]] = {}


def _fingerprint(definition: Definition) -> str:
    """A hash of everything drawn from the definition (a State's repr leaves out its raw
    document, so add the title and comment); computed once per definition object."""
    entry = _FINGERPRINTS.get(id(definition))
    if entry is not None and entry[0]() is definition:
        return entry[1]
    notes = [(s.raw.get("title"), s.raw.get("comment")) if isinstance(s.raw, dict) else None
             for s in definition.states.values()]
    drawn = (definition.start_at, definition.states, notes)  # not budgets, schemas or sample input
    digest = hashlib.sha256(repr(drawn).encode("utf-8", "surrogatepass")).hexdigest()
    key = id(definition)
    try:
        ref = weakref.ref(definition, lambda _ref: _FINGERPRINTS.pop(key, None))
    except TypeError:  # not weak-referenceable: hash every time
        return digest
    _FINGERPRINTS[key] = (ref, digest)
    return digest


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.S)


def _dot(source: str, fmt: str) -> bytes:
    try:
        done = subprocess.run(["dot", f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True,
                              timeout=DOT_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError as exc:
        raise GraphRenderError("Graphviz's dot is not installed (apt-get install graphviz)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GraphRenderError(f"dot took more than {DOT_TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0:
        raise GraphRenderError(f"dot failed: {done.stderr.decode('utf-8', 'replace').strip()[:500]}")
    return done.stdout


def render_png(definition: Definition) -> bytes:
    """The definition's graph as a PNG image (an export; not cached)."""
    return _dot(to_dot(definition), "png")


@lru_cache(maxsize=CACHE_SIZE // 2)
def _render(source: str) -> str:
    svg = _COMMENT.sub("", _PROLOG.sub("", _dot(source, "svg").decode("utf-8"), count=1))
    return svg.replace("<svg ", '<svg class="workflow-graph" ', 1).strip()


_GRAPH_LINK = re.compile(r'<a xlink:href="([^"]*)"')


def htmx_links(svg: str, rewrite: Callable[[str], str] = lambda link: link) -> SafeString:
    """The SVG with each state's link also an htmx request to ``rewrite(href)`` (dot cannot write
    hx-get itself); the hrefs are the ones render_svg wrote (HTML-escaped), kept as they are."""
    return mark_safe(_GRAPH_LINK.sub(
        lambda link: f'<a xlink:href="{link[1]}" hx-get="{escape(rewrite(unescape(link[1])))}"', svg))
