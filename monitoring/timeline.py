"""A run's timeline (Gantt), drawn on the server as SVG: one lane per line of execution (the
main line, each branch, the saga), and for each attempt the time it waited for its timer,
queued for a worker and ran, coloured by outcome and labelled in words in its tooltip. Each
bar links to its attempt's row, so the timeline, the attempts table and the history point at
the same attempt; given ``select``, a click on a bar (through htmx) also selects its state, and
the bars of the ``selected`` state are outlined while the others fade. No extra query: it reads
the timeline ``history.timeline`` already built.

A long run (more than ``AGGREGATE_ABOVE`` attempts, e.g. a step retried a hundred times) would
be thousands of one-pixel bars: there, the tries of one visit (a step's retries and resumes)
are drawn as one bar spanning them, labelled with how many tries and how many failed, and
linking to the first of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from orchestrator.engine.history import AttemptEntry, first_tries

WIDTH, LANE, TOP, LEFT, RIGHT, BOTTOM = 900, 22, 8, 170, 12, 28
MAX_LANES = 40
AGGREGATE_ABOVE = 300  # attempts: above this, the tries of one visit are one bar
LABEL_MIN_WIDTH = 46  # a bar this wide has room for its count of tries in words
# Fill by attempt status; every bar also says its status in its tooltip, and failures are
# outlined, so the chart does not rely on colour alone.
FILLS = {"succeeded": "#7bc48f", "failed": "#e07a72", "timed_out": "#e07a72", "lost": "#b58ad6",
         "cancelled": "#c4c8cf", "running": "#6f9ef0", "waiting": "#f2c46d", "scheduled": "#dde1e7"}
OUTLINED = {"failed", "timed_out", "lost"}
SEGMENTS = (("timer", "waiting for its timer or backoff", "#eef0f3"), ("queued", "queued for a worker", "#dde1e7"))


def lane_of(entry: AttemptEntry) -> str:
    if entry.kind == "compensation":
        return "compensation (saga)"
    return entry.branch_path or "main line"


def _x(moment: datetime, start: datetime, span: float) -> float:
    seconds = (moment - start).total_seconds()
    return LEFT + (WIDTH - LEFT - RIGHT) * max(0.0, min(seconds / span, 1.0))


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _tooltip(entry: AttemptEntry) -> str:
    parts = [f"{entry.state_name} (attempt {entry.id}, try {entry.attempt}): {entry.status.replace('_', ' ')}"]
    if entry.queue_wait_ms is not None:
        parts.append(f"queued {_seconds(entry.queue_wait_ms / 1000)}")
    if entry.duration_ms is not None:
        parts.append(f"ran {_seconds(entry.duration_ms / 1000)}")
    if entry.worker:
        parts.append(f"on {entry.worker}")
    if entry.resumed_from:
        parts.append(f"resumed after attempt {entry.resumed_from} was lost")
    elif entry.is_retry:
        parts.append(f"retry of attempt {entry.retry_of}")
    if entry.error_type:
        parts.append(f"{entry.error_type}: {entry.error_message[:200]}")
    return "; ".join(parts)


def aggregates(entries: Sequence[AttemptEntry]) -> bool:
    """Whether the chart draws each visit's tries as one bar (a long run)."""
    return len(entries) > AGGREGATE_ABOVE


def visits(entries: Sequence[AttemptEntry]) -> list[list[AttemptEntry]]:
    """The attempts grouped by visit (a try and its retries or resumes), in order of first try."""
    groups: dict[int, list[AttemptEntry]] = {}
    first = first_tries(entries)
    for entry in entries:
        groups.setdefault(first[entry.id], []).append(entry)
    return list(groups.values())


def timeline_svg(entries: Sequence[AttemptEntry], started: datetime, finished: datetime | None,
                 now: datetime | None = None, *, selected: str = "",
                 select: Callable[[str], str] | None = None) -> SafeString:
    """The chart; ``select(state)`` gives the URL that selects a state (put in each bar's
    ``hx-get``, the ``href`` staying the attempt's row), ``selected`` the state now selected."""
    now = now or timezone.now()
    end = finished or now
    span = max((end - started).total_seconds(), 0.001)
    lanes: list[str] = []
    for entry in entries:
        if lane_of(entry) not in lanes:
            lanes.append(lane_of(entry))
    hidden = max(len(lanes) - MAX_LANES, 0)
    shown = lanes[:MAX_LANES]
    height = TOP + LANE * len(shown) + BOTTOM
    groups = visits(entries) if aggregates(entries) else [[entry] for entry in entries]
    drawn = (f"; the tries of each step drawn as one bar ({len(groups)} bars)" if len(groups) < len(entries)
             else "")
    out: list[str] = [
        f'<svg class="timeline" role="img" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-labelledby="timeline-title"><title id="timeline-title">Timeline of {len(entries)} attempts over '
        f'{_seconds(span)}, one lane per line of execution{drawn}</title>'
    ]
    for row, lane in enumerate(shown):
        y = TOP + row * LANE
        out.append(f'<text x="{LEFT - 6}" y="{y + 15}" text-anchor="end" font-size="11">'
                   f'{escape(lane[-28:])}</text>')
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y + LANE}" y2="{y + LANE}" stroke="#eef0f3"/>')
    for tries in groups:
        lane = lane_of(tries[0])
        if lane not in shown:
            continue
        y, looks = TOP + shown.index(lane) * LANE, _looks(tries[0], selected, select)
        out.append(_bar(tries[0], y, started, span, now, looks) if len(tries) == 1
                   else _visit_bar(tries, y, started, span, now, looks))
    axis_y = TOP + LANE * len(shown) + 14
    for step in range(5):
        x = LEFT + (WIDTH - LEFT - RIGHT) * step / 4
        anchor = "end" if step == 4 else "middle"  # the last tick inside the chart, not cut off
        out.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="{anchor}" font-size="10" fill="#5b6576">'
                   f'+{_seconds(span * step / 4)}</text>')
    out.append("</svg>")
    note = f'<p class="muted">And {hidden} more branches: see the attempts table.</p>' if hidden else ""
    return mark_safe("".join(out) + note)


def _looks(entry: AttemptEntry, selected: str, select: Callable[[str], str] | None) -> str:
    """The bar's selection class and its htmx link (escaped: state names are user text)."""
    classes = "bar selected" if selected and entry.state_name == selected else "bar faded" if selected else "bar"
    link = f' hx-get="{escape(select(entry.state_name))}"' if select else ""
    return f'class="{classes}" data-state="{escape(entry.state_name)}"{link}'


def _bar(entry: AttemptEntry, y: float, started: datetime, span: float, now: datetime, looks: str) -> str:
    pieces: list[str] = []
    due = entry.scheduled_at
    if entry.not_before and entry.not_before > entry.scheduled_at:
        pieces.append(_rect(entry.scheduled_at, entry.not_before, y, started, span, SEGMENTS[0][2], "timer"))
        due = entry.not_before
    pieces.append(_rect(due, entry.claimed_at or now, y, started, span, SEGMENTS[1][2], "queued"))
    if entry.claimed_at:
        fill = FILLS.get(entry.status, "#c4c8cf")
        outline = ' stroke="#1d2430" stroke-width="1.5"' if entry.status in OUTLINED else ""
        pieces.append(_rect(entry.claimed_at, entry.finished_at or now, y, started, span, fill, "ran", outline))
    return (f'<a href="#attempt-{entry.id}" {looks} data-attempt="{entry.id}"><title>{escape(_tooltip(entry))}'
            f'</title>{"".join(pieces)}</a>')


def _visit_bar(tries: Sequence[AttemptEntry], y: float, started: datetime, span: float, now: datetime,
               looks: str) -> str:
    """One bar for a visit's tries: its first wait, then from its first claim to its last end,
    coloured by how the last try ended, outlined if any failed, with the count of tries in words."""
    first, last = tries[0], tries[-1]
    failed = sum(entry.status in OUTLINED for entry in tries)
    pieces: list[str] = []
    due = first.scheduled_at
    if first.not_before and first.not_before > first.scheduled_at:
        pieces.append(_rect(first.scheduled_at, first.not_before, y, started, span, SEGMENTS[0][2], "timer"))
        due = first.not_before
    ran_from = first.claimed_at or due
    pieces.append(_rect(due, ran_from, y, started, span, SEGMENTS[1][2], "queued"))
    outline = ' stroke="#1d2430" stroke-width="1.5"' if failed else ""
    pieces.append(_rect(ran_from, last.finished_at or now, y, started, span, FILLS.get(last.status, "#c4c8cf"),
                        "ran", outline))
    x1, x2 = _x(ran_from, started, span), _x(last.finished_at or now, started, span)
    if x2 - x1 >= LABEL_MIN_WIDTH:
        pieces.append(f'<text x="{x1 + 3:.1f}" y="{y + 15}" font-size="10" fill="#1d2430" pointer-events="none">'
                      f'{len(tries)} tries</text>')
    return (f'<a href="#attempt-{first.id}" {looks} data-attempt="{first.id}" data-tries="{len(tries)}">'
            f'<title>{escape(_visit_tooltip(tries, failed))}</title>{"".join(pieces)}</a>')


def _visit_tooltip(tries: Sequence[AttemptEntry], failed: int) -> str:
    first, last = tries[0], tries[-1]
    parts = [f"{first.state_name} (attempts {first.id} to {last.id}): {len(tries)} tries, {failed} failed; "
             f"the last {last.status.replace('_', ' ')}"]
    if first.claimed_at and last.finished_at:
        parts.append(f"over {_seconds((last.finished_at - first.claimed_at).total_seconds())}")
    errors = {(entry.error_type, entry.error_message) for entry in tries if entry.error_type}
    if errors:
        error = next(entry for entry in reversed(tries) if entry.error_type)
        parts.append(f"last error {error.error_type}: {error.error_message[:200]}"
                     + (f" ({len(errors)} different errors)" if len(errors) > 1 else ""))
    parts.append(f"click for attempt {first.id}, the first try")
    return "; ".join(parts)


def _rect(start: datetime, end: datetime, y: float, origin: datetime, span: float, fill: str, kind: str,
          extra: str = "") -> str:
    x1, x2 = _x(start, origin, span), _x(end, origin, span)
    return (f'<rect class="{kind}" x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 1.5):.1f}" height="{LANE - 8}" '
            f'fill="{fill}" rx="2"{extra}/>')


def legend(*, aggregated: bool = False) -> list[tuple[str, str]]:
    """(colour, words) pairs for the page's legend under the timeline; ``aggregated`` adds what a
    bar standing for a step's tries means."""
    items: list[tuple[str, str]] = [(colour, words) for _, words, colour in SEGMENTS]
    items += [(FILLS[s], f"ran: {s.replace('_', ' ')}") for s in ("succeeded", "running", "failed", "lost",
                                                                 "cancelled")]
    if aggregated:
        items.append((FILLS["failed"], "a bar labelled \u201cN tries\u201d: a step's retries drawn as one bar, "
                                       "coloured by its last try"))
    return items
