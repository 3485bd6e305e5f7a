"""How the workflow graph looks: a shape, fill and outline per state type and per run status,
edge styles, and the legend that says in words what each means (never colour alone)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class StateMark(StrEnum):
    """A state's status in one run (``orchestrator.engine.history.state_marks`` gives the first four)."""

    VISITED = "visited"
    CURRENT = "current"
    FAILED = "failed"
    COMPENSATED = "compensated"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class _Look:
    label: str  # what the legend says
    shape: str
    fill: str
    stroke: str
    style: str = ""  # dot style words besides "filled"
    penwidth: float = 1.2
    peripheries: int = 1
    fontcolor: str = "#202124"


# Types: a shape each (so print and colour-blind readers tell them apart) and a pale fill.
TYPE_LOOKS: dict[str, _Look] = {
    "task": _Look("Task: runs a handler", "box", "#e8f0fe", "#1967d2", "rounded"),
    "agent": _Look("Agent: a model with tools", "hexagon", "#f3e8fd", "#8430ce"),
    "handoff": _Look("Handoff: passes control to an agent", "cds", "#feefe3", "#c26401"),
    "subworkflow": _Look("Sub-workflow: starts a child run", "folder", "#e4f7fb", "#007b83"),
    "choice": _Look("Choice: first matching rule wins", "diamond", "#fef7e0", "#b06000"),
    "wait": _Look("Wait: sleeps", "parallelogram", "#f1f3f4", "#5f6368"),
    "parallel": _Look("Parallel: runs its branches at once", "trapezium", "#e8eaf6", "#3949ab"),
    "map": _Look("Map: runs its iterator per item", "box3d", "#fce4ec", "#ad1457"),
    "approval": _Look("Approval: waits for a person", "note", "#fff8e1", "#8d6e00"),
    "succeed": _Look("Succeed: ends the run successfully", "oval", "#e6f4ea", "#137333", peripheries=2),
    "fail": _Look("Fail: ends the run with an error", "doubleoctagon", "#fce8e6", "#c5221f"),
}
UNKNOWN_LOOK = _Look("Unknown type", "box", "#ffffff", "#5f6368", "dashed")
MISSING_LOOK = _Look("Missing: a transition names no state", "box", "#ffffff", "#c5221f", "dashed", fontcolor="#c5221f")
JOIN_LOOK = _Look("Join: where branches meet", "invtrapezium", "#f1f3f4", "#5f6368", fontcolor="#3c4043")
START_LOOK = _Look("Start of the run", "oval", "#202124", "#202124", fontcolor="#ffffff")
END_LOOK = _Look("End of the run (a state with end: true)", "oval", "#202124", "#202124", peripheries=2,
                 fontcolor="#ffffff")
# Statuses: a fill, an outline colour AND an outline pattern, plus the word in the label.
STATUS_LOOKS: dict[StateMark, _Look] = {
    StateMark.VISITED: _Look("Visited: ran and finished", "", "#e6f4ea", "#137333", "solid", 1.6),
    StateMark.CURRENT: _Look("Current: running or waiting now", "", "#fef7e0", "#b06000", "bold", 3.0),
    StateMark.FAILED: _Look("Failed", "", "#fce8e6", "#c5221f", "solid", 2.6),
    StateMark.COMPENSATED: _Look("Compensated: its effect was undone", "", "#f3e8fd", "#8430ce", "dashed", 2.0),
    StateMark.SKIPPED: _Look("Skipped", "", "#f8f9fa", "#80868b", "dotted", 1.6, fontcolor="#5f6368"),
}
# dot's own trapezia are very wide around a multi-line label: gentler polygons, same meaning.
_DOT_SHAPES: dict[str, dict[str, str]] = {
    "trapezium": {"shape": "polygon", "sides": "4", "distortion": "-0.15", "margin": "0.03,0"},
    "invtrapezium": {"shape": "polygon", "sides": "4", "distortion": "0.2"},
}
UNREACHED_FILL = "#ffffff"
SELECTED_COLOR = "#174ea6"
SELECTED_PENWIDTH = 4.5
HIGHLIGHT_PENWIDTH = 3.0


class _Highlight(NamedTuple):
    """A state the designer points out: its outline and the words in the node."""

    stroke: str
    style: str
    words: str
    legend: str


HIGHLIGHT_LOOKS: dict[str, _Highlight] = {
    "problem": _Highlight("#c5221f", "dashed", "has a problem: see the findings",
                          "Has a problem: dashed red outline (see the findings)"),
    "added": _Highlight("#137333", "bold", "added", "Added in the newer version: thick green outline"),
    "changed": _Highlight("#b06000", "bold", "changed", "Changed: thick amber outline (the fields are listed)"),
    "removed": _Highlight("#c5221f", "dashed", "removed", "Removed in the newer version: dashed red outline"),
}


@dataclass(frozen=True)
class _EdgeLook:
    label: str
    style: str
    color: str


EDGE_LOOKS: dict[str, _EdgeLook] = {
    "next": _EdgeLook("Next: then runs", "solid", "#3c4043"),
    "choice": _EdgeLook("Choice rule, labelled with its condition", "solid", "#3c4043"),
    "default": _EdgeLook("Choice default, labelled \"default\"", "solid", "#3c4043"),
    "catch": _EdgeLook("Catch, labelled with the errors it catches", "dashed", "#c5221f"),
    "route": _EdgeLook("Agent route, labelled \"route\"", "dashed", "#8430ce"),
    "handoff": _EdgeLook("Handoff, labelled \"handoff\"", "bold", "#c26401"),
    "gate": _EdgeLook("Gate: a person approves the transition, labelled \"needs approval\"", "bold", "#8d6e00"),
    "reject": _EdgeLook("Approval rejected, labelled \"reject\"", "dashed", "#c5221f"),
    "outcome": _EdgeLook("Approval outcome, labelled with its name", "dashed", "#8d6e00"),
    "fork": _EdgeLook("Into a branch", "solid", "#80868b"),
    "removed": _EdgeLook("Removed transition (a diff), labelled \"removed\"", "dashed", "#c5221f"),
    "join": _EdgeLook("Branch finished", "solid", "#80868b"),
}


class LegendItem(NamedTuple):
    """One legend entry: ``key`` is a state type, a ``StateMark`` value or an edge kind."""

    key: str
    label: str
    shape: str  # dot shape name ("" for statuses and edges)
    fill: str
    stroke: str
    line: str  # solid, dashed, dotted or bold
    group: str  # "type", "marker", "status", "problem", "diff" or "edge"


def legend_items() -> list[LegendItem]:
    """Every shape, status and edge style the graphs use, for the page to draw as HTML.

    The legend is not drawn inside the SVG: dot would lay it out among the states (it moves
    with every graph and makes large graphs larger), and as HTML it wraps on narrow screens,
    is read by screen readers, and is drawn once for several graphs. ``legend_swatch(item)``
    gives a small SVG sample of each."""
    items = [LegendItem(t, look.label, look.shape, look.fill, look.stroke, _line(look.style, look.peripheries), "type")
             for t, look in TYPE_LOOKS.items()]
    items += [LegendItem(key, look.label, look.shape, look.fill, look.stroke, _line(look.style, look.peripheries),
                         "marker")
              for key, look in (("start", START_LOOK), ("end", END_LOOK), ("join", JOIN_LOOK))]
    items += [LegendItem(str(mark), f"status: {mark} ({look.label})", "", look.fill, look.stroke,
                         _line(look.style, 1), "status") for mark, look in STATUS_LOOKS.items()]
    items.append(LegendItem("unreached", "No status: not reached in this run (run views only)", "", UNREACHED_FILL,
                            "#5f6368", "solid", "status"))
    items.append(LegendItem("selected", "Selected: thick dark-blue outline", "", "#ffffff", SELECTED_COLOR, "bold",
                            "status"))
    items += [LegendItem(kind, look.legend, "", "#ffffff", look.stroke, look.style,
                         "problem" if kind == "problem" else "diff") for kind, look in HIGHLIGHT_LOOKS.items()]
    items.append(LegendItem("edge_added", "Transition added: thick green line, labelled \"new\"", "", "",
                            HIGHLIGHT_LOOKS["added"].stroke, "bold", "diff"))
    items += [LegendItem(kind, look.label, "", "", look.color, look.style, "edge")
              for kind, look in EDGE_LOOKS.items() if kind != "removed"]
    removed = EDGE_LOOKS["removed"]  # only a comparison draws it
    items.append(LegendItem("edge_removed", removed.label, "", "", removed.color, removed.style, "diff"))
    return items


def _line(style: str, peripheries: int) -> str:
    if peripheries > 1:
        return "double"
    for word in ("dashed", "dotted", "bold"):
        if word in style:
            return word
    return "solid"


_SWATCH_POINTS = {
    "hexagon": "4,9 8,2 24,2 28,9 24,16 8,16",
    "cds": "2,2 24,2 30,9 24,16 2,16",
    "diamond": "16,1 30,9 16,17 2,9",
    "parallelogram": "7,2 30,2 25,16 2,16",
    "invtrapezium": "2,2 30,2 26,16 6,16",
    "trapezium": "6,2 26,2 30,16 2,16",
    "doubleoctagon": "8,1 24,1 31,6 31,12 24,17 8,17 1,12 1,6",
    "note": "2,2 24,2 30,7 30,16 2,16",
    "folder": "2,4 12,4 14,2 20,2 22,4 30,4 30,16 2,16",
    "box3d": "2,5 5,2 30,2 30,13 27,16 2,16",
}
_DASH = {"dashed": ' stroke-dasharray="4 2"', "dotted": ' stroke-dasharray="1 2"'}


def legend_swatch(item: LegendItem) -> str:
    """A 32x18 inline SVG sample of a legend item (its shape, fill and line), safe to embed."""
    fill = html.escape(item.fill or "none")
    stroke = html.escape(item.stroke or "#000000")
    width = 3 if item.line == "bold" else 1.5
    dash = _DASH.get(item.line, "")
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}'
    if item.group == "edge" or item.key.startswith("edge_"):
        body = (f'<line x1="2" y1="9" x2="25" y2="9" stroke="{stroke}" stroke-width="{width}"{dash}/>'
                f'<polygon points="25,5 31,9 25,13" fill="{stroke}"/>')
    elif item.shape in ("oval", "ellipse"):
        body = f'<ellipse cx="16" cy="9" rx="14" ry="7" {paint}/>'
        if item.line == "double":
            body += f'<ellipse cx="16" cy="9" rx="11" ry="4.5" fill="none" stroke="{stroke}" stroke-width="1"/>'
    elif item.shape in _SWATCH_POINTS:
        body = f'<polygon points="{_SWATCH_POINTS[item.shape]}" {paint}/>'
    else:
        radius = ' rx="4"' if item.shape == "box" and item.group == "type" else ""
        body = f'<rect x="2" y="2" width="28" height="14"{radius} {paint}/>'
    return (f'<svg class="legend-swatch" width="32" height="18" viewBox="0 0 32 18" aria-hidden="true" '
            f'xmlns="http://www.w3.org/2000/svg">{body}</svg>')
