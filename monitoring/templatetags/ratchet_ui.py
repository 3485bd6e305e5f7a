"""Small presentation helpers for Ratchet's pages: durations, money, JSON, status badges."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..graphs import legend_items, legend_swatch

register = template.Library()


@register.filter
def duration(value: Any) -> str:
    """Seconds (or a timedelta) as people read them: 850 ms, 1.2 s, 3 min 4 s, 2 h 5 min."""
    if value is None or value == "":
        return "–"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


@register.filter
def ms(value: Any) -> str:
    """Milliseconds, as a duration."""
    return "–" if value is None else duration(float(value) / 1000)


@register.filter
def run_duration(run: Any) -> str:
    end = run.finished_at or timezone.now()
    return duration(end - run.created_at)


@register.filter
def age(moment: datetime | None) -> str:
    return "–" if moment is None else f"{duration(timezone.now() - moment)} ago"


@register.filter
def money(value: Any) -> str:
    if value is None:
        return "–"
    amount = Decimal(str(value))
    if amount == 0:
        return "$0"
    return f"${amount:.6f}" if amount < Decimal("0.01") else f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


@register.filter
def percent(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f} %"


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.simple_tag
def json_viewer(value: Any, label: str = "JSON", open_: bool = False) -> str:
    """A collapsible, escaped JSON block (the page's static script adds a copy button)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    size = f"{len(text):,} characters"
    return format_html('<details class="json"{}><summary>{} <span class="muted">({})</span></summary>'
                       '<pre class="copyable">{}</pre></details>', " open" if open_ else "", label, size, text)


@register.simple_tag
def badge(status: str) -> str:
    """A status as a coloured badge that also says it in words (never colour alone)."""
    return format_html('<span class="badge badge-{}">{}</span>', status, str(status).replace("_", " "))


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    return mapping.get(key, "") if hasattr(mapping, "get") else ""


@register.filter
def make_list_words(value: str) -> list[str]:
    return value.split()


@register.simple_tag
def graph_legend(*groups: str) -> str:
    """The graph's legend as HTML (a swatch and its words), for the groups asked for."""
    items = [item for item in legend_items() if item.group in groups]
    rows = format_html_join("", '<li>{} {}</li>', ((mark_safe(legend_swatch(item)), item.label) for item in items))
    return format_html('<ul class="legend" aria-label="Legend">{}</ul>', rows)
