"""The Graphviz renderer: every demo draws, user text never becomes markup, marks and links work,
and renders are cached. Plain pytest: no database."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.graphs import (
    GraphRenderError,
    StateMark,
    clear_cache,
    cluster_id,
    condition_text,
    legend_items,
    legend_swatch,
    node_id,
    render_svg,
    to_dot,
)
from orchestrator.engine.definition import Definition, build_definition

DEMOS = sorted((Path(__file__).resolve().parents[2] / "orchestrator" / "demo" / "workflows").glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
# Everything dot's SVG renderer writes for our graphs; anything else would be injected markup.
VOCABULARY = {f"{SVG}{tag}" for tag in ("svg", "g", "title", "a", "polygon", "polyline", "ellipse", "path", "text")}
ATTRIBUTES = {"id", "class", "width", "height", "viewBox", "transform", "fill", "stroke", "stroke-width",
              "stroke-dasharray", "points", "d", "cx", "cy", "rx", "ry", "x", "y", "text-anchor", "font-family",
              "font-size", "font-weight", "font-style", f"{XLINK}href", f"{XLINK}title", "target"}
NASTY = '"><script>alert(1)</script>'


def demo(path: Path) -> Definition:
    return build_definition(yaml.safe_load(path.read_text()))


def demo_named(name: str) -> Definition:
    return demo(next(p for p in DEMOS if p.stem == name))


def parse(svg: str) -> ET.Element:
    assert svg.startswith("<svg"), svg[:80]
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<!--" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def assert_only_svg_vocabulary(root: ET.Element) -> None:
    for element in root.iter():
        assert element.tag in VOCABULARY, f"unexpected element {element.tag}"
        assert set(element.attrib) <= ATTRIBUTES, f"unexpected attributes {set(element.attrib) - ATTRIBUTES}"
        assert not any(name.lower().startswith("on") for name in element.attrib)


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def by_id(root: ET.Element, element_id: str) -> ET.Element:
    found = [e for e in root.iter() if e.get("id") == element_id]
    assert len(found) == 1, (element_id, len(found))
    return found[0]


def text_of(element: ET.Element) -> str:
    """The element's text, its pieces joined by single spaces."""
    return " ".join(" ".join(t.text or "" for t in element.iter(f"{SVG}text")).split())


def tooltip_of(element: ET.Element) -> str:
    return next(a.get(f"{XLINK}title") for a in element.iter(f"{SVG}a"))


def outline(node: ET.Element) -> ET.Element:
    """The shape's outline: the first path, polygon or ellipse dot drew for it."""
    return next(e for e in node.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon", f"{SVG}ellipse"))


def edges(root: ET.Element, kind: str) -> list[ET.Element]:
    return groups(root, f"edge_{kind}")


def state_nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("id"): g for g in groups(root, "state")}


# A document that uses every state type, a map, a parallel nested in a parallel's branch,
# all/any/not guards, agent routes and a handoff. Built without the validator, as a draft may be.
def kitchen_sink() -> dict[str, Any]:
    return {
        "title": "Everything",
        "start_at": "intake",
        "states": {
            "intake": {"type": "task", "handler": "demo.intake", "next": "route",
                       "catch": [{"errors": ["TimeoutError", "ValueError"], "next": "broken"}]},
            "route": {"type": "choice", "choices": [
                {"condition": {"all": [{"path": "input.total", "op": "gt", "value": 100},
                                       {"not": {"path": "input.vip", "op": "eq", "value": True}}]},
                 "next": "each"},
                {"condition": {"any": [{"path": "input.a", "op": "exists"}, {"path": "input.b", "op": "in",
                                                                                "value": [1, 2]},
                                       {"path": "input.c", "op": "is_null", "value": False}]},
                 "next": "fanout"},
            ], "default": "sleep"},
            "sleep": {"type": "wait", "seconds": 2, "next": "approve"},
            "approve": {"type": "approval", "next": "child"},
            "child": {"type": "subworkflow", "workflow": "billing", "version": 2, "next": "agent"},
            "each": {"type": "map", "items_path": "input.items", "max_concurrency": 5,
                     "iterator": {"start_at": "item_work", "states": {
                         "item_work": {"type": "task", "handler": "demo.item", "end": True}}},
                     "next": "fanout"},
            "fanout": {"type": "parallel", "join": {"mode": "quorum", "count": 1}, "branches": {
                "left": {"start_at": "left_work", "states": {
                    "left_work": {"type": "task", "handler": "demo.left", "next": "left_done"},
                    "left_done": {"type": "succeed"}}},
                "right": {"start_at": "inner", "states": {
                    "inner": {"type": "parallel", "branches": {
                        "deep": {"start_at": "deep_work", "states": {
                            "deep_work": {"type": "task", "handler": "demo.deep", "end": True}}}},
                        "end": True}}},
            }, "next": "agent", "catch": [{"errors": ["*"], "next": "broken"}]},
            "agent": {"type": "agent", "provider": "offline", "model": "demo.triage", "tools": ["demo.lookup"],
                      "routes": ["pass_on", "finish"]},
            "pass_on": {"type": "handoff", "to": "helper"},
            "helper": {"type": "agent", "provider": "offline", "model": "demo.helper", "routes": ["finish"]},
            "finish": {"type": "task", "handler": "demo.finish", "end": True},
            "broken": {"type": "fail", "error": "Broken", "cause": "it broke"},
        },
    }


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_every_demo_renders_one_node_per_state_and_its_clusters(path):
    definition = demo(path)
    root = parse(render_svg(definition))
    assert_only_svg_vocabulary(root)
    assert set(state_nodes(root)) == {node_id(name) for name in definition.states}
    expected = {cluster_id(s.name, i) for s in definition.states.values() for i, _ in enumerate(s.branches)}
    assert {g.get("id") for g in groups(root, "cluster")} == expected
    assert len(by_id(root, "graph_start")) and edges(root, "next")
    for node in state_nodes(root).values():  # a real tooltip, not dot's "<TABLE>" for HTML labels
        assert tooltip_of(node) and "TABLE" not in tooltip_of(node)


def test_research_branches_are_labelled_clusters_with_counts():
    definition = demo_named("research")
    root = parse(render_svg(definition, counts={"research": "3/3 joined", "research/faq": "done"}))
    labels = [text_of(by_id(root, cluster_id("research", i))) for i in range(3)]
    assert labels == ["changelog", "faq · done", "handbook"]  # branches in name order
    assert "3/3 joined" in text_of(by_id(root, node_id("research")))
    assert "join all" in text_of(by_id(root, f"join_{node_id('research')}"))
    # branch ends meet at the join, and the parallel's next leaves from it
    assert len(edges(root, "join")) == 3 and len(edges(root, "fork")) == 3


def test_kitchen_sink_draws_every_type_nested_clusters_and_edge_kinds():
    definition = build_definition(kitchen_sink())
    svg = render_svg(definition, counts={"each": "812/1000"})
    root = parse(svg)
    assert_only_svg_vocabulary(root)
    assert set(state_nodes(root)) == {node_id(name) for name in definition.states}
    shapes = {g.get("id"): g.get("class") for g in groups(root, "state")}
    for name, state in definition.states.items():
        assert f"type_{state.type}" in shapes[node_id(name)]
    assert "812/1000" in text_of(by_id(root, node_id("each")))
    assert "each item" in text_of(by_id(root, cluster_id("each", 0)))
    assert "812/1000" in text_of(by_id(root, cluster_id("each", 0)))
    # the nested parallel's cluster sits inside its outer branch's subgraph
    source = to_dot(definition)
    outer, inner = source.index(f"subgraph {cluster_id('fanout', 1)} {{"), source.index(
        f"subgraph {cluster_id('inner', 0)} {{")
    between = source[outer:inner]
    assert outer < inner and between.count("{") > between.count("}")
    # edge kinds: labels and line styles
    choice_labels = {text_of(e) for e in edges(root, "choice")}
    assert "1. input.total > 100 and not input.vip == true" in choice_labels  # top level: no parentheses
    assert "2. input.a exists or input.b in [1, 2] or 1 more" in choice_labels
    assert [text_of(e) for e in edges(root, "default")] == ["default"]
    catch = {text_of(e) for e in edges(root, "catch")}
    assert catch == {"catch TimeoutError, ValueError", "catch any error"}
    for kind in ("catch", "route"):
        for edge in edges(root, kind):
            assert edge.find(f".//{SVG}path").get("stroke-dasharray"), kind
    assert {text_of(e) for e in edges(root, "route")} == {"route"} and len(edges(root, "route")) == 3
    assert [text_of(e) for e in edges(root, "handoff")] == ["handoff"]
    assert by_id(root, "graph_end") is not None  # finish has end: true
    # terminals are drawn with double outlines
    assert len(list(by_id(root, node_id("broken")).iter(f"{SVG}polygon"))) == 2


def test_condition_text_is_short_and_readable():
    assert condition_text({"path": "validate.total", "op": "gte", "value": 500}) == "validate.total >= 500"
    assert condition_text({"path": "a", "op": "eq", "value": "gold"}) == 'a == "gold"'
    assert condition_text({"not": {"any": [{"path": "a", "op": "exists"}, {"path": "b", "op": "lt", "value": 1}]}}) \
        == "not (a exists or b < 1)"
    many = {"all": [{"path": f"p{i}", "op": "ne", "value": i} for i in range(5)]}
    assert condition_text(many) == "p0 != 0 and p1 != 1 and 3 more"
    assert condition_text({"path": "x", "op": "eq", "value": "y" * 100}).endswith("…")
    assert condition_text("nonsense") == "?"


def nasty_definition() -> Definition:
    doc = kitchen_sink()
    states = doc["states"]
    states["intake"]["handler"] = "</text><script>alert(1)</script>"
    states["intake"]["title"] = "<b>x</b>"
    states["intake"]["comment"] = NASTY
    states["intake"]["catch"][0]["errors"] = ["A&B", "<img src=x onerror=alert(1)>", "&lt;entity&gt;"]
    states["route"]["choices"][0]["condition"] = {"path": "input.x", "op": "eq", "value": NASTY}
    states["route"]["choices"][1]["condition"] = {"path": "input.<i>", "op": "eq", "value": "<b>x</b>"}
    states["agent"]["model"] = "<svg onload=alert(1)>"
    states["agent"]["tools"] = ["]]><script>"]
    states["child"]["workflow"] = "\\N\\G\\l --> <!--"
    states["broken"]["error"] = "E&<>\"'"
    states["broken"]["cause"] = NASTY
    states["each"]["items_path"] = "input.<script>"
    branches = states["fanout"]["branches"]
    branches["<b>evil</b>\n\x00"] = branches.pop("left")
    return build_definition(doc)


def test_user_text_is_escaped_everywhere():
    definition = nasty_definition()
    counts = {"fanout": NASTY, "fanout/<b>evil</b>\n\x00": "<i>2</i>"}
    svg = render_svg(definition, counts=counts, marks={"intake": "failed"}, link=lambda name: f"?state={name}")
    root = parse(svg)
    assert_only_svg_vocabulary(root)
    lowered = svg.lower()
    for markup in ("<script", "<b>", "<i>", "<img", "<svg onload", "<!--", "]]>"):
        assert markup not in lowered[1:], markup
    # ...and the text reads as the author wrote it
    texts = " ".join(text_of(g) for g in root.iter(f"{SVG}g"))
    for shown in ("<b>x</b>", "</text><script>alert(1)</script>", "<svg onload=alert(1)>", "<b>evil</b>"):
        assert shown in texts, shown
    assert 'input.x == "\u2216"><script>' in texts  # the JSON of the value, its backslash shown as U+2216
    catch = {text_of(e) for e in edges(root, "catch")}
    assert "catch A&B, <img src=x onerror=alert(1)>, &lt;entity&gt;" in catch
    assert "fail · E&<>\"'" in texts
    # backslashes are shown, not expanded by dot (\N is the node name, \G the graph's)
    child = text_of(by_id(root, node_id("child")))
    assert "\u2216N\u2216G\u2216l --> <!--" in child and "state_child" not in child
    tooltips = [a.get(f"{XLINK}title") for a in root.iter(f"{SVG}a")]
    assert any(NASTY in t for t in tooltips) and any("]]><script>" in t for t in tooltips)


def test_links_are_escaped_and_only_relative_or_http():
    definition = demo_named("order_fulfilment")
    root = parse(render_svg(definition, link=lambda name: NASTY))
    assert_only_svg_vocabulary(root)
    hrefs = [a.get(f"{XLINK}href") for a in by_id(root, node_id("validate")).iter(f"{SVG}a")]
    assert hrefs == [NASTY]

    root = parse(render_svg(definition, link=lambda name: f"/runs/7/?state={name}&tab=io\\x"))
    assert [a.get(f"{XLINK}href") for a in by_id(root, node_id("charge")).iter(f"{SVG}a")] == [
        "/runs/7/?state=charge&tab=io\\x"]

    for bad in ("javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,<script>", "x\ny"):
        svg = render_svg(definition, link=lambda name, bad=bad: bad)
        assert f"{XLINK}href" not in {k for e in parse(svg).iter() for k in e.attrib}, bad
    assert f"{XLINK}href" not in {k for e in parse(render_svg(definition)).iter() for k in e.attrib}


def test_marks_add_the_status_word_colour_and_class():
    definition = demo_named("order_fulfilment")
    marks = {"validate": StateMark.VISITED, "is_valid": "visited", "reserve": StateMark.COMPENSATED,
             "charge": StateMark.FAILED, "pack": StateMark.CURRENT, "ship": StateMark.SKIPPED}
    root = parse(render_svg(definition, marks=marks))
    for name, mark in marks.items():
        node = by_id(root, node_id(name))
        assert f"status: {StateMark(mark)}" in text_of(node), name
        assert f"status_{StateMark(mark)}" in node.get("class").split()
        assert f"status: {StateMark(mark)}" in tooltip_of(node)
    dashes = {name: outline(by_id(root, node_id(name))).get("stroke-dasharray") for name in marks}
    assert dashes["reserve"] and dashes["ship"] and not dashes["charge"]  # not colour alone: the line too
    fills = {name: outline(by_id(root, node_id(name))).get("fill") for name in ("charge", "notify")}
    assert fills == {"charge": "#fce8e6", "notify": "#ffffff"}  # unmarked: not reached, white
    assert "status:" not in text_of(by_id(root, node_id("notify")))
    plain = parse(render_svg(definition))
    assert outline(by_id(plain, node_id("notify"))).get("fill") == "#e8f0fe"
    with pytest.raises(ValueError):
        render_svg(definition, marks={"validate": "exploded"})


def test_selected_node_is_outlined_thickly():
    definition = demo_named("order_fulfilment")
    root = parse(render_svg(definition, selected="ship", marks={"ship": "current"}))
    ship, pack = by_id(root, node_id("ship")), by_id(root, node_id("pack"))
    assert "selected" in ship.get("class").split() and "selected" not in pack.get("class").split()
    assert float(outline(ship).get("stroke-width")) >= 4
    assert float(outline(pack).get("stroke-width") or 1) < 2


def test_ids_are_safe_and_unique():
    assert node_id("charge") == "state_charge"
    assert node_id("bad-name") == "statex_" + b"bad-name".hex()
    assert node_id('"><x') != node_id("x") and node_id("").startswith("statex_")
    assert cluster_id("research", 2) == "cluster_state_research_2"


def test_missing_targets_are_drawn_not_dropped():
    doc = {"start_at": "a", "states": {"a": {"type": "task", "handler": "h", "next": "<nowhere>"}}}
    root = parse(render_svg(build_definition(doc)))
    missing = groups(root, "missing")
    assert len(missing) == 1 and "missing state: <nowhere>" in text_of(missing[0])


def test_a_malformed_draft_still_renders():
    doc = {"start_at": "nowhere", "states": {
        "w": {"type": "wait", "seconds": "soon", "next": "p"},
        "p": {"type": "parallel", "join": {"mode": "quorum", "count": "two"}, "branches": {
            "b": {"start_at": "x", "states": {"x": {"type": "mystery", "end": True}}}}, "next": "c"},
        "c": {"type": "choice", "choices": [{"condition": {"weird": [1]}, "next": "w"},
                                            {"condition": {"all": "no"}, "next": "w"}]},
        "bad name!": {"type": "task", "catch": [{"errors": [1, None], "next": "gone"}]},
        # text dot's HTML labels choke on: a leading "]", nothing at all, only control characters
        "odd": {"type": "task", "handler": "]]>", "title": "\x00", "comment": "", "end": True},
    }}
    definition = build_definition(doc)
    root = parse(render_svg(definition, marks={"x": "skipped"}, selected="bad name!", counts={"odd": "]", "p": ""}))
    assert_only_svg_vocabulary(root)
    assert set(state_nodes(root)) == {node_id(name) for name in definition.states}
    assert "wait soon s" in text_of(by_id(root, node_id("w")))
    assert text_of(by_id(root, node_id("odd"))) == "odd task · ]]> ]"
    assert "selected" in by_id(root, node_id("bad name!")).get("class").split()
    assert {text_of(g) for g in groups(root, "missing")} == {"missing state: nowhere", "missing state: gone"}


def test_cache_returns_the_same_object_for_the_same_inputs():
    doc = yaml.safe_load(next(p for p in DEMOS if p.stem == "follow_up").read_text())
    first = render_svg(build_definition(doc), marks={"remind": "current"}, counts={}, selected="remind")
    again = render_svg(build_definition(copy.deepcopy(doc)), marks={"remind": StateMark.CURRENT}, counts={},
                       selected="remind")
    assert again is first
    other = render_svg(build_definition(doc), marks={"remind": "failed"}, selected="remind")
    assert other != first and "status: failed" in other
    assert render_svg(build_definition(doc), marks={"remind": "current"}, counts={}, selected=None) != first
    changed = copy.deepcopy(doc)
    changed["states"]["remind"]["handler"] = "demo.other"
    assert render_svg(build_definition(changed), marks={"remind": "current"}, counts={}, selected="remind") != first


def test_legend_covers_every_type_and_status():
    items = legend_items()
    keys = {item.key for item in items}
    assert {"task", "agent", "handoff", "subworkflow", "choice", "wait", "parallel", "map", "succeed", "fail",
            "approval"} <= keys
    assert {str(mark) for mark in StateMark} <= keys
    assert {"next", "choice", "default", "catch", "route", "handoff"} <= keys
    types = [item for item in items if item.group == "type"]
    assert len({item.shape for item in types}) == len(types)  # a distinct shape per type
    assert len({item.fill for item in types}) == len(types)
    for item in items:
        swatch = ET.fromstring(legend_swatch(item))
        assert swatch.tag == f"{SVG}svg"
        key, label, shape = item[:3]
        assert key and label


def test_dot_failure_is_reported(monkeypatch):
    import monitoring.graphs as graphs

    monkeypatch.setattr(graphs.subprocess, "run", _raise_missing)
    with pytest.raises(GraphRenderError):
        render_svg(demo_named("noop_chain"))


def _raise_missing(*args: Any, **kwargs: Any) -> None:
    raise FileNotFoundError("dot")


def test_gates_and_approval_outcomes_are_labelled_edges_with_escaped_names():
    definition = build_definition({"start_at": "draft", "states": {
        "draft": {"type": "task", "handler": "demo.noop", "next": "review",
                  "requires_approval": {"title": NASTY}},
        "review": {"type": "approval", "approvers": {"groups": ["<b>finance</b>"]}, "next": "send",
                   "reject": "closed", "outcomes": {"ask_more": "draft"}},
        "send": {"type": "task", "handler": "demo.noop", "next": "big", "requires_approval": {},
                 "catch": [{"errors": ["Bounced"], "next": "closed", "requires_approval": {}}]},
        "big": {"type": "choice", "default": "closed", "choices": [
            {"condition": {"path": "input.x", "op": "gt", "value": 1}, "next": "closed", "requires_approval": {}}]},
        "closed": {"type": "succeed"}}})
    root = parse(render_svg(definition))
    assert_only_svg_vocabulary(root)
    assert sorted(text_of(e) for e in edges(root, "gate")) == [
        "catch Bounced, needs approval", "input.x > 1, needs approval", "needs approval", "needs approval"]
    assert [text_of(e) for e in edges(root, "reject")] == ["reject"]
    assert [text_of(e) for e in edges(root, "outcome")] == ["ask_more"]
    assert "approve" in {text_of(e) for e in edges(root, "next")}
    assert "approval · <b>finance</b>" in text_of(by_id(root, node_id("review")))
