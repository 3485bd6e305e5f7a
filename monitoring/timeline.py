"""A run's timeline (Gantt), drawn on the server as SVG: one lane per line of execution (the
main line, each branch, the saga), and for each attempt the time it waited for its timer,
queued for a worker and ran, coloured by outcome and labelled in words in its tooltip. Each
bar links to its attempt's row, so the timeline, the attempts table and the history point at
the same attempt; given ``select``, a click on a bar (through htmx) also selects its state, and
the bars of the ``selected`` state are outlined while the others fade. No extra query: it reads
the timeline ``history.timeline`` already built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from orchestrator.engine.history import AttemptEntry

WIDTH, LANE, TOP, LEFT, RIGHT, BOTTOM = 900, 22, 8, 170, 12, 28
MAX_LANES = 40
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
    out: list[str] = [
        f'<svg class="timeline" role="img" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-labelledby="timeline-title"><title id="timeline-title">Timeline of {len(entries)} attempts over '
        f'{_seconds(span)}, one lane per line of execution</title>'
    ]
    for row, lane in enumerate(shown):
        y = TOP + row * LANE
        out.append(f'<text x="{LEFT - 6}" y="{y + 15}" text-anchor="end" font-size="11">'
                   f'{escape(lane[-28:])}</text>')
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y + LANE}" y2="{y + LANE}" stroke="#eef0f3"/>')
    for entry in entries:
        lane = lane_of(entry)
        if lane not in shown:
            continue
        out.append(_bar(entry, TOP + shown.index(lane) * LANE, started, span, now, _looks(entry, selected, select)))
    axis_y = TOP + LANE * len(shown) + 14
    for step in range(5):
        x = LEFT + (WIDTH - LEFT - RIGHT) * step / 4
        out.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle" font-size="10" fill="#5b6576">'
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


def _rect(start: datetime, end: datetime, y: float, origin: datetime, span: float, fill: str, kind: str,
          extra: str = "") -> str:
    x1, x2 = _x(start, origin, span), _x(end, origin, span)
    return (f'<rect class="{kind}" x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 1.5):.1f}" height="{LANE - 8}" '
            f'fill="{fill}" rx="2"{extra}/>')


def legend() -> list[tuple[str, str]]:
    """(colour, words) pairs for the page's legend under the timeline."""
    items: list[tuple[str, str]] = [(colour, words) for _, words, colour in SEGMENTS]
    items += [(FILLS[s], f"ran: {s.replace('_', ' ')}") for s in ("succeeded", "running", "failed", "lost",
                                                                 "cancelled")]
    return items
