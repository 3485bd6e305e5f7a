"""How long the editor takes to redraw and re-check a large draft (``manage.py bench_designer``,
part of ``make bench``): a 60-state workflow, each request a new selection, so every SVG is drawn
by dot again (the cache keys on the selection), plus validation and the panel."""

from __future__ import annotations

import statistics
import time
from typing import Any

from orchestrator.engine.validator import validate

from . import source
from .drafts import Snapshot
from .editor import editor_view
from .models import Draft, DraftRevision

TARGET_MS = 300.0


def large_definition(states: int = 60) -> dict[str, Any]:
    """A pipeline of tasks with a choice every tenth state and one parallel fork: ``states`` in all."""
    names = [f"step_{i:02d}" for i in range(states - 3)]
    doc: dict[str, Any] = {"name": "large", "budgets": {"max_steps": 500}, "start_at": names[0], "states": {}}
    for i, name in enumerate(names):
        following = names[i + 1] if i + 1 < len(names) else "fork"
        if i % 10 == 9:
            doc["states"][name] = {"type": "choice", "default": following, "choices": [
                {"condition": {"path": f"{names[i - 1]}.score", "op": "gt", "value": i}, "next": following}]}
        else:
            doc["states"][name] = {"type": "task", "handler": "demo.noop", "next": following,
                                   "retry": [{"max_attempts": 2}]}
    doc["states"]["fork"] = {"type": "parallel", "next": "done", "branches": {
        "a": {"start_at": "branch_a", "states": {"branch_a": {"type": "task", "handler": "demo.noop", "end": True}}},
    }}
    doc["states"]["done"] = {"type": "succeed"}
    return doc


def measure(repeats: int = 15, states: int = 60) -> list[float]:
    """Milliseconds per editor redraw (validation, graph, panel), each with a new selection."""
    doc = large_definition(states)
    text = source.dump(doc, "yaml")
    draft = Draft(name="large", revision=1)
    revision = DraftRevision(draft=draft, number=1, source=text, format="yaml", note="bench")
    names = list(doc["states"])
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        parsed = source.parse(text, "yaml")
        snap = Snapshot(draft, revision, parsed, validate(parsed), False, False)
        view = editor_view(snap, names[(i * 7) % len(names)])
        assert view.graph is not None, view.graph_problem
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float], states: int = 60) -> str:
    p50 = statistics.median(samples)
    return (f"bench: designer_render_{states}_states_ms_p50={p50:.1f} "
            f"designer_render_{states}_states_ms_max={max(samples):.1f} target_ms={TARGET_MS:.0f} "
            f"missed={'designer_render' if p50 > TARGET_MS else 'none'}")
