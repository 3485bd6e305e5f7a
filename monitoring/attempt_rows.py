"""Which rows of a run's attempts table the page renders. A run retried 2,000 times must not send
2,000 rows and their tracebacks: above ``BOUNDED_ABOVE`` attempts the table shows the landmarks an
operator debugging a retry storm looks for (the first tries, the latest ones, the attempt that
failed the run, the first try of each state and of each retried visit, and the selected state's
first and latest tries), and a "gap" row in place of each run of attempts left out, saying what
it holds and loading the next ``PAGE`` of them (htmx, or a whole page without JavaScript).

Tracebacks are only read for the rows rendered; in a bounded table a traceback identical to one
already on the page (same state, error and text) says "same as attempt N" instead of repeating
it, except the failed attempt's, always shown whole."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict
from django.urls import reverse

from orchestrator.engine import history
from orchestrator.engine.history import AttemptEntry
from orchestrator.models import Run

from .run_page import HistoryFilter, for_htmx, selector

BOUNDED_ABOVE = 150  # up to this many attempts, every row is shown, as before
HEAD, TAIL = 50, 50  # the first and the latest tries
SELECTED_EACH_END = 25  # the selected state's first and latest tries
LANDMARKS = 50  # at most this many first tries of a state or of a retried visit
PAGE = 100  # attempts a gap's "Load more attempts" adds
STATES_NAMED = 3  # a gap names this many of the states it holds
FAILED = {"failed", "timed_out", "lost"}


@dataclass(frozen=True)
class Row:
    """An attempt's row, with the traceback to show under it, or the earlier row showing the same."""

    entry: AttemptEntry
    traceback: str = ""
    same_as: int | None = None
    gap = False


@dataclass(frozen=True)
class Gap:
    """Attempts ``first`` to ``last`` (ids, inclusive) not shown: ``count`` of them."""

    first: int
    last: int
    count: int
    failed: int
    states: tuple[str, ...]
    other_states: int
    gap = True

    @property
    def next_page(self) -> int:
        return min(self.count, PAGE)


def bounded(entries: Sequence[AttemptEntry]) -> bool:
    return len(entries) > BOUNDED_ABOVE


def opened_range(query: QueryDict) -> tuple[int, int] | None:
    """The gap a "Load more attempts" asked for (``attempts_from``, ``attempts_to``: attempt ids),
    or None when absent or not two ids in order."""
    first, last = query.get("attempts_from", ""), query.get("attempts_to", "")
    if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
        return None
    return int(first), int(last)


def shown_ids(entries: Sequence[AttemptEntry], *, selected: str = "", failed: int | None = None,
              opened: tuple[int, int] | None = None) -> set[int]:
    """The ids of the attempts whose rows are rendered: all of a small run's; a long run's
    landmarks, plus the first ``PAGE`` attempts of the ``opened`` gap."""
    if not bounded(entries):
        return {entry.id for entry in entries}
    ids = {entry.id for entry in [*entries[:HEAD], *entries[-TAIL:]]} | set(_landmarks(entries))
    if failed:
        ids.add(failed)
    if selected:
        of_state = [entry.id for entry in entries if entry.state_name == selected]
        ids |= {*of_state[:SELECTED_EACH_END], *of_state[-SELECTED_EACH_END:]}
    if opened:
        ids.update([entry.id for entry in entries if opened[0] <= entry.id <= opened[1]][:PAGE])
    return ids


def _landmarks(entries: Sequence[AttemptEntry]) -> list[int]:
    """The first try of each state, then of each visit tried more than once (what a timeline bar of
    retries links to), at most ``LANDMARKS``."""
    states: dict[str, int] = {}
    for entry in entries:
        states.setdefault(entry.state_name, entry.id)
    retried = {first for attempt, first in history.first_tries(entries).items() if attempt != first}
    return list(dict.fromkeys([*sorted(states.values()), *sorted(retried)]))[:LANDMARKS]


def rows(entries: Iterable[AttemptEntry], show: set[int], tracebacks: dict[int, str], *, dedupe: bool,
         failed: int | None = None, seen: Iterable[AttemptEntry] = ()) -> list[Row | Gap]:
    """The table's rows, oldest first: a ``Row`` per attempt in ``show``, a ``Gap`` for each run of
    attempts between them. With ``dedupe`` (a bounded table), a traceback already shown on an
    earlier row, or on one of ``seen`` (rows already on the page), is not repeated."""
    shown_first: dict[tuple[str, str, str, str], int] = {}
    for entry in seen:
        if tracebacks.get(entry.id):
            shown_first.setdefault(_same(entry, tracebacks[entry.id]), entry.id)
    out: list[Row | Gap] = []
    hidden: list[AttemptEntry] = []
    for entry in entries:
        if entry.id not in show:
            hidden.append(entry)
            continue
        if hidden:
            out.append(_gap(hidden))
            hidden = []
        text = tracebacks.get(entry.id, "")
        earlier = shown_first.setdefault(_same(entry, text), entry.id) if text else entry.id
        if dedupe and earlier != entry.id and entry.id != failed:
            out.append(Row(entry, same_as=earlier))
        else:
            out.append(Row(entry, traceback=text))
    if hidden:
        out.append(_gap(hidden))
    return out


def _same(entry: AttemptEntry, traceback: str) -> tuple[str, str, str, str]:
    return entry.state_name, entry.error_type, entry.error_message, traceback


def _gap(hidden: Sequence[AttemptEntry]) -> Gap:
    states = list(dict.fromkeys(entry.state_name for entry in hidden))
    failed = sum(entry.status in FAILED for entry in hidden)
    return Gap(first=hidden[0].id, last=hidden[-1].id, count=len(hidden),
               failed=failed, states=tuple(states[:STATES_NAMED]),
               other_states=max(len(states) - STATES_NAMED, 0))


def table_context(run: Run, shown: HistoryFilter, entries: list[AttemptEntry], states: Collection[str],
                      opened: tuple[int, int] | None, *, fragment: bool = False) -> dict[str, Any]:
    """What the attempts table (_attempts.html) needs: its rows and gaps (a bounded set for a long
    run, see attempt_rows), and, for a ``fragment``, only the next page of the ``opened`` gap."""
    failed, dedupe = run.failed_attempt_id, bounded(entries)
    if fragment and opened:
        on_page = shown_ids(entries, selected=shown.state, failed=failed)
        inside = [entry for entry in entries if opened[0] <= entry.id <= opened[1]]
        seen = [entry for entry in entries if entry.id < opened[0] and entry.id in on_page]
        page = {entry.id for entry in inside[:PAGE]}
        texts = history.tracebacks_of(run, page | {entry.id for entry in seen})
        items = rows(inside, page, texts, dedupe=dedupe, failed=failed, seen=seen)
    else:
        show = shown_ids(entries, selected=shown.state, failed=failed, opened=opened)
        items = rows(entries, show, history.tracebacks_of(run, show), dedupe=dedupe, failed=failed)
    first_of: dict[str, int] = {}
    for entry in entries:
        first_of.setdefault(entry.state_name, entry.id)
    select = selector(run, shown)
    urls = {name: select(name) for name in states}
    base = reverse("monitoring:run_detail", args=[run.pk])
    rendered = sum(not item.gap for item in items)
    state = f"{urlencode({'state': shown.state})}&" if shown.state else ""
    return {
        "attempt_rows": items, "first_of": first_of, "select_urls": urls,
        "select_gets": {name: for_htmx(url) for name, url in urls.items()},
        "attempts_total": len(entries), "attempts_hidden": len(entries) - rendered, "attempts_bounded": dedupe,
        "attempts_href": f"{base}?{shown.query()}&" if shown.active else f"{base}?",
        "attempts_get": f"{base}?{state}fragment=attempts&",  # htmx adds the filter boxes (hx-include)
    }
