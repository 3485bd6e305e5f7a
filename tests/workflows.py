"""Small workflow definitions for tests, published through the real publish path."""

from __future__ import annotations

from typing import Any

from orchestrator.engine.workflows import publish
from orchestrator.models import Run, RunStatus
from orchestrator.models.runs import TERMINAL_RUN_STATUSES

from .conftest import wait_for


def task(handler: str, **fields: Any) -> dict[str, Any]:
    return {"type": "task", "handler": handler, **fields}


def chain(name: str, *states: tuple[str, dict[str, Any]], **top: Any) -> str:
    """Publish a linear workflow: each state flows to the next, the last one ends the run."""
    doc_states: dict[str, Any] = {}
    for index, (state_name, state) in enumerate(states):
        state = dict(state)
        if state["type"] in ("task", "wait") and "next" not in state and "end" not in state:
            if index + 1 < len(states):
                state["next"] = states[index + 1][0]
            else:
                state["end"] = True
        doc_states[state_name] = state
    publish({"name": name, "start_at": states[0][0], "states": doc_states, **top})
    return name


def finished(run: Run, timeout: float = 30) -> Run:
    """Wait for a run to reach a terminal status and return it fresh from the database."""

    def done() -> Run | None:
        fresh = Run.objects.get(pk=run.pk)
        return fresh if fresh.status in TERMINAL_RUN_STATUSES else None

    return wait_for(done, timeout, what=f"run {run.pk} to finish")  # type: ignore[return-value]


def reaches(run: Run, status: str, timeout: float = 30) -> Run:
    def there() -> Run | None:
        fresh = Run.objects.get(pk=run.pk)
        return fresh if fresh.status == status else None

    return wait_for(there, timeout, what=f"run {run.pk} to be {status}")  # type: ignore[return-value]


ORDER = {
    "order_id": "T-1",
    "customer": "ann@example.com",
    "items": [{"sku": "BOOK", "qty": 2, "price": 300.0}, {"sku": "PEN", "qty": 1, "price": 2.5}],
}

__all__ = ["ORDER", "RunStatus", "chain", "finished", "reaches", "task"]
