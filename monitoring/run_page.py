"""The run page's query string: which history it shows (event groups, one state, only what a
person did) and which state is selected, and the links that select a state while keeping the
filters, on the graph, the timeline and the attempts."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict
from django.urls import reverse
from django.utils.safestring import SafeString

from orchestrator.engine import history
from orchestrator.models import Run

from .graphs import htmx_links


@dataclass(frozen=True)
class HistoryFilter:
    """What the run page's history shows, read from the query string: event groups (``kind``,
    repeatable, names of ``history.EVENT_GROUPS``), one state (``state``, also the page's
    selection) and only what a person did (``operator=1``). Unknown values are dropped and
    said in ``errors``."""

    groups: tuple[str, ...] = ()
    state: str = ""
    by_person: bool = False
    errors: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: QueryDict, states: Collection[str]) -> HistoryFilter:
        errors: list[str] = []
        groups: list[str] = []
        for group in query.getlist("kind"):
            if group in history.EVENT_GROUPS:
                groups += [] if group in groups else [group]
            elif group:
                errors.append(f"unknown event kind {group[:60]!r}: use one of {', '.join(history.EVENT_GROUPS)}")
        state = query.get("state", "")
        if state and state not in states:
            errors.append(f"unknown state {state[:100]!r}: this run's workflow has no such state")
            state = ""
        person = query.get("operator", "").lower()
        if person not in YES | NO:
            errors.append(f"operator must be 1 or 0, not {person[:20]!r}")
        return cls(tuple(groups), state, person in YES, tuple(errors))

    def query(self, **changes: Any) -> str:
        """This filter as a query string, with ``changes`` (e.g. ``state=""`` to clear the selection)."""
        values = {"kind": list(self.groups), "state": self.state, "operator": "1" if self.by_person else "", **changes}
        pairs = [(key, one) for key, value in values.items() for one in (value if isinstance(value, list) else [value])]
        return urlencode([(key, one) for key, one in pairs if one])

    @property
    def active(self) -> bool:
        return bool(self.groups or self.state or self.by_person)


YES, NO = {"1", "on", "true", "yes"}, {"", "0", "off", "false", "no"}


def selector(run: Run, shown: HistoryFilter) -> Callable[[str], str]:
    """State name -> the URL that selects it (or, for the state already selected, clears it),
    keeping the other filters: a link's ``href``, for a full page."""
    base = reverse("monitoring:run_detail", args=[run.pk])

    def url(state: str) -> str:
        query = shown.query(state="" if state == shown.state else state)
        return f"{base}?{query}" if query else base

    return url


# Where a selection link's hx-get takes the history filters from, instead of its own URL: a
# filter swaps the history only, so links outside it keep the filters they were drawn with.
FILTER_BOXES = "#history-filter input[type=checkbox]"


def for_htmx(url: str) -> str:
    """A selection URL with only its ``state``: htmx adds the filter boxes (``hx-include``)."""
    path, _, query = url.partition("?")
    state = QueryDict(query).get("state")
    return f"{path}?{urlencode({'state': state})}" if state else path


def selecting_links(svg: str) -> SafeString:
    """The graph with each state's link also an htmx request that keeps the history filters."""
    return htmx_links(svg, for_htmx)
