"""Fixtures of the validator's tests: a document builder and the real handler registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.engine.validator import Finding, validate

from .definitions import FAIL, SUCCEED, choice, task, when


@pytest.fixture
def make_doc() -> Callable[..., dict[str, Any]]:
    """A definition document: ``make_doc(first=task("done"), done=SUCCEED, budgets={...})``.

    ``start_at`` defaults to the first state; other keyword arguments that are not states
    (``start_at``, ``budgets``, ``name``, ...) go at the top level.
    """
    top_level = {"start_at", "budgets", "name", "title", "description", "topology", "timeout_seconds"}

    def make(**parts: Any) -> dict[str, Any]:
        states = {k: v for k, v in parts.items() if k not in top_level}
        doc = {"name": "test_flow", **{k: v for k, v in parts.items() if k in top_level}, "states": states}
        doc.setdefault("start_at", next(iter(states), "first"))
        return doc

    return make


@pytest.fixture
def valid_doc(make_doc) -> dict[str, Any]:
    return make_doc(first=task("check"), check=choice((when(), "done"), default="rejected"),
                    done=SUCCEED, rejected=FAIL)


@pytest.fixture
def findings_for() -> Callable[[Any], list[Finding]]:
    """Validate with the real handler registry."""
    return validate
