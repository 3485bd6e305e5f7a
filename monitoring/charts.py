"""Small charts over time buckets, drawn on the server as SVG (no JavaScript).

    chart = time_chart("completion", "Completion rate", buckets, [Series("completion rate", values)],
                       unit=PERCENT, kind="line")
    chart.svg        # a SafeString: <svg role="img"> with <title>, <desc>, axes, gridlines
    chart.columns    # the same values as a table: column headings
    chart.rows       # one row per bucket: (time range, formatted value, ...)

Why drawn on the server, not by a vendored JS charting library: the pages are server-rendered
and must work without JavaScript, offline and under a strict content security policy; an SVG
string is printable, readable by screen readers (``<title>``, ``<desc>``, a ``<title>`` on every
point) and testable by parsing it as XML; the charts needed here (a few lines or bars over at
most a few dozen buckets) take a hundred lines, not a dependency and its updates.

Conventions (docs/UI): every series differs by colour *and* by dash pattern and marker shape,
and its name is written in the legend, so the chart reads in grey print; the y axis says the
unit on every tick label and in its title; a value that could not be measured (``None``) is a
gap in the line and "no data" in the table, never a zero. Every text is XML-escaped; ids are
built from ``[a-z0-9-]`` only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Literal

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

__all__ = [
    "COUNT", "DURATION", "MONEY", "PER_MINUTE", "PERCENT", "Chart", "Series", "Unit", "bucket_label", "per_minute",
    "span_words", "time_chart",
]

Number = float | int | Decimal

# Geometry (viewBox units; the SVG scales to its container).
WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 78, 16, 26, 74
MAX_X_LABELS = 7

# Series styles: colour, dash pattern and marker shape, so that no series relies on colour alone.
STYLES = (
    ("#2f6fde", "", "circle"),
    ("#a15c00", "6 4", "square"),
    ("#1e7d3b", "2 3", "triangle"),
    ("#b3261e", "10 3 2 3", "diamond"),
)
STYLE_WORDS = {"": "solid line", "6 4": "dashed line", "2 3": "dotted line", "10 3 2 3": "dash-dot line"}


def _fmt_duration(seconds: float) -> str:
    from .templatetags.ratchet_ui import duration

    return duration(seconds)


def _fmt_money(value: float) -> str:
    from .templatetags.ratchet_ui import money

    return money(Decimal(str(round(value, 6))))


def per_minute(value: float) -> str:
    """A rate per minute, with three significant digits below 1 (``0.00208 /min``, ``12.5 /min``)."""
    if value == 0:
        return "0 /min"
    if abs(value) < 1:
        return f"{value:.3g} /min"
    return f"{_trim(value, 2)} /min"


def _money_tick(value: float) -> str:
    """Money for an axis: no trailing zeros past the cents (``$0.75``, not ``$0.7500``)."""
    text = _fmt_money(value)
    return re.sub(r"(\.\d\d\d*?)0+$", r"\1", text)


def _trim(value: float, digits: int) -> str:
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Unit:
    """How a value is written (with its unit) and the axis title's unit words."""

    name: str  # for the axis title: "percent", "seconds", "US dollars", "per minute"
    format: Callable[[float], str]
    fixed_max: float | None = None  # rates: the axis always reaches 100 %
    tick_format: Callable[[float], str] | None = None  # for the axis, when shorter than ``format``

    def __call__(self, value: Number | None) -> str:
        return "no data" if value is None else self.format(float(value))

    def tick(self, value: float) -> str:
        return (self.tick_format or self.format)(value)


PERCENT = Unit("percent", lambda v: f"{_trim(v * 100, 1)} %", fixed_max=1.0)
DURATION = Unit("seconds", _fmt_duration)
MONEY = Unit("US dollars", _fmt_money, tick_format=_money_tick)
PER_MINUTE = Unit("per minute", per_minute)
COUNT = Unit("count", lambda v: _trim(v, 0))


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Number | None]


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    svg: SafeString
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _nice_step(raw: float) -> float:
    """The 1-2-5 step at or above ``raw``."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


DURATION_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
                  900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def _ticks(top: float, unit: Unit, count: int = 4) -> list[float]:
    """Tick values from 0 to at least ``top`` (about ``count`` steps)."""
    if unit.fixed_max is not None:
        top = max(top, unit.fixed_max)
        return [top * i / 4 for i in range(5)]
    top = top if top > 0 else 1.0
    raw = top / count
    if unit is DURATION:
        step = next((s for s in DURATION_STEPS if s >= raw), _nice_step(raw))
    else:
        step = _nice_step(raw)
        if unit is COUNT:
            step = max(step, 1.0)
    n = max(1, math.ceil(top / step - 1e-9))
    return [step * i for i in range(n + 1)]


def _id(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "chart"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _time_label_format(span: timedelta, bucket: timedelta) -> str:
    if span <= timedelta(days=1) and bucket < timedelta(days=1):
        return "%H:%M"
    if bucket < timedelta(days=1):
        return "%d %b %H:%M"
    return "%d %b"


def bucket_label(start: datetime, end: datetime, fmt: str | None = None) -> str:
    """A bucket in words for tables and point titles: ``14:00 – 15:00`` (the page's time zone)."""
    fmt = fmt or _time_label_format(end - start, end - start)
    a, b = timezone.localtime(start), timezone.localtime(end)
    if fmt == "%H:%M" and a.date() != b.date() and (b - a) < timedelta(days=1):
        return f"{a:%d %b %H:%M} – {b:%H:%M}"
    return f"{a.strftime(fmt)} – {b.strftime(fmt)}"


def _marker(shape: str, x: float, y: float, colour: str, tip: str) -> str:
    title = f"<title>{escape(tip)}</title>"
    if shape == "circle":
        return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="3.5" fill="{colour}">{title}</circle>'
    if shape == "square":
        return f'<rect x="{_num(x - 3.5)}" y="{_num(y - 3.5)}" width="7" height="7" fill="{colour}">{title}</rect>'
    if shape == "triangle":
        points = f"{_num(x)},{_num(y - 4.5)} {_num(x + 4)},{_num(y + 3)} {_num(x - 4)},{_num(y + 3)}"
    else:  # diamond
        corners = ((x, y - 4.5), (x + 4.5, y), (x, y + 4.5), (x - 4.5, y))
        points = " ".join(f"{_num(cx)},{_num(cy)}" for cx, cy in corners)
    return f'<polygon points="{points}" fill="{colour}">{title}</polygon>'


def _describe(title: str, buckets: Sequence[tuple[datetime, datetime]], series: Sequence[Series], unit: Unit,
              kind: str) -> str:
    first, last = timezone.localtime(buckets[0][0]), timezone.localtime(buckets[-1][1])
    width = buckets[0][1] - buckets[0][0]
    parts = [f"{'Bar' if kind == 'bar' else 'Line'} chart of {title.lower()} in {len(buckets)} buckets of "
             f"{span_words(width)}, from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} ({first:%Z})."]
    for index, s in enumerate(series):
        known = [float(v) for v in s.values if v is not None]
        style = STYLE_WORDS[STYLES[index % len(STYLES)][1]] if kind == "line" else "bars"
        if not known:
            parts.append(f"{s.name} ({style}): no data in this window.")
            continue
        latest = next(v for v in reversed(s.values) if v is not None)
        parts.append(f"{s.name} ({style}): lowest {unit(min(known))}, highest {unit(max(known))}, "
                     f"latest {unit(latest)}; {len(known)} of {len(s.values)} buckets have data.")
    parts.append("The data table that follows the chart lists every value.")
    return " ".join(parts)


def span_words(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for size, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {word}{'s' if n != 1 else ''}"
    return _fmt_duration(span.total_seconds())


def time_chart(
    key: str,
    title: str,
    buckets: Sequence[tuple[datetime, datetime]],
    series: Sequence[Series],
    *,
    unit: Unit,
    kind: Literal["line", "bar"] = "line",
    y_title: str | None = None,
) -> Chart:
    """A line or bar chart of ``series`` over ``buckets`` (``(start, end)`` pairs, oldest first),
    with its data as table columns and rows. Pure: the same input gives the same SVG."""
    if not buckets:
        raise ValueError("a chart needs at least one bucket")
    if len(series) > len(STYLES):
        raise ValueError(f"a chart draws at most {len(STYLES)} series")
    for s in series:
        if len(s.values) != len(buckets):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(buckets)} buckets")
    cid = _id(key)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    known = [float(v) for s in series for v in s.values if v is not None]
    ticks = _ticks(max(known, default=0.0), unit)
    y_max = ticks[-1] or 1.0
    n = len(buckets)
    slot = plot_w / n
    span = buckets[-1][1] - buckets[0][0]
    width = buckets[0][1] - buckets[0][0]
    fmt = _time_label_format(span, width)

    def x_mid(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    def y_of(value: float) -> float:
        return TOP + plot_h - (value / y_max) * plot_h

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart"'
        f' aria-labelledby="{cid}-title {cid}-desc" font-family="system-ui, sans-serif" font-size="11">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(_describe(title, buckets, series, unit, kind))}</desc>',
    ]
    # Gridlines and y tick labels, then the y axis title (with its unit).
    out.append('<g class="grid" stroke="#dde1e7" stroke-width="1">')
    for tick in ticks:
        y = y_of(tick)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_num(y)}" y2="{_num(y)}"/>')
    out.append("</g>")
    out.append('<g class="y-axis" fill="#5b6576" text-anchor="end">')
    for tick in ticks:
        out.append(f'<text x="{LEFT - 6}" y="{_num(y_of(tick) + 4)}">{escape(unit.tick(tick))}</text>')
    out.append("</g>")
    axis_title = y_title or unit.name
    out.append(f'<text class="axis-title" x="{LEFT}" y="14" fill="#5b6576" font-weight="600">'
               f'{escape(axis_title)}</text>')
    # The axes themselves.
    out.append(f'<g class="axes" stroke="#1d2430" stroke-width="1"><line x1="{LEFT}" x2="{LEFT}" y1="{TOP}"'
               f' y2="{TOP + plot_h}"/><line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}"'
               f' y2="{TOP + plot_h}"/></g>')
    # X labels at evenly spaced bucket starts (at most MAX_X_LABELS), plus the axis title.
    every = max(1, math.ceil(n / MAX_X_LABELS))
    out.append('<g class="x-axis" fill="#5b6576" text-anchor="middle">')
    for i in range(0, n, every):
        x = LEFT + slot * i
        label = timezone.localtime(buckets[i][0]).strftime(fmt)
        out.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}"'
                   f' stroke="#1d2430"/><text x="{_num(x)}" y="{TOP + plot_h + 16}">{escape(label)}</text>')
    zone = timezone.localtime(buckets[0][0]).strftime("%Z") or "local time"
    out.append(f'</g><text class="axis-title" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h + 34}" fill="#5b6576"'
               f' text-anchor="middle">time ({escape(zone)}), bucket start</text>')
    # The data.
    for index, s in enumerate(series):
        colour, dash, shape = STYLES[index % len(STYLES)]
        out.append(f'<g class="series series-{index}" data-series="{escape(s.name)}">')
        if kind == "bar":
            bar_w = slot * 0.8 / len(series)
            for i, value in enumerate(s.values):
                if value is None:
                    continue
                x = LEFT + slot * i + slot * 0.1 + bar_w * index
                y = y_of(float(value))
                tip = f"{s.name}, {bucket_label(*buckets[i], fmt)}: {unit(value)}"
                pattern = f' stroke="#1d2430" stroke-dasharray="{dash}"' if dash else ' stroke="#1d2430"'
                out.append(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}"'
                           f' height="{_num(TOP + plot_h - y)}" fill="{colour}" fill-opacity="0.8"{pattern}>'
                           f'<title>{escape(tip)}</title></rect>')
        else:
            segments: list[list[tuple[float, float]]] = [[]]
            for i, value in enumerate(s.values):
                if value is None:
                    if segments[-1]:
                        segments.append([])
                    continue
                segments[-1].append((x_mid(i), y_of(float(value))))
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            for points in segments:
                if len(points) > 1:
                    path = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
                    out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"'
                               f'{dash_attr}/>')
            for i, value in enumerate(s.values):
                if value is not None:
                    tip = f"{s.name}, {bucket_label(*buckets[i], fmt)}: {unit(value)}"
                    out.append(_marker(shape, x_mid(i), y_of(float(value)), colour, tip))
        out.append("</g>")
    # Legend, under the x axis, left to right: a sample of each series' line and marker (or bar),
    # then its name in words.
    out.append(f'<g class="legend" transform="translate({LEFT} {HEIGHT - 12})">')
    x = 0.0
    for index, s in enumerate(series):
        colour, dash, shape = STYLES[index % len(STYLES)]
        if kind == "bar":
            pattern = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<rect x="{_num(x + 5)}" y="-5" width="12" height="10" fill="{colour}" fill-opacity="0.8"'
                       f' stroke="#1d2430"{pattern}/>')
        else:
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{_num(x)}" x2="{_num(x + 22)}" y1="0" y2="0" stroke="{colour}"'
                       f' stroke-width="2"{dash_attr}/>')
            out.append(_marker(shape, x + 11, 0, colour, s.name))
        out.append(f'<text x="{_num(x + 28)}" y="4" fill="#1d2430">{escape(s.name)}</text>')
        x += 28 + 7.5 * len(s.name) + 20  # the text's width at 11 px (wide fonts too), and a gap
    out.append("</g>")
    if not known:
        out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle"'
                   f' fill="#5b6576" font-size="13">No data in this window</text>')
    out.append("</svg>")
    columns = ["Time", *(f"{s.name} ({unit.name})" for s in series)]
    rows = [[bucket_label(*bucket, fmt), *(unit(s.values[i]) for s in series)] for i, bucket in enumerate(buckets)]
    return Chart(key=cid, title=title, svg=mark_safe("".join(out)), columns=columns, rows=rows)  # noqa: S308
