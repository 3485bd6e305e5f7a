"""The runs list: filters read from the query string, and keyset (cursor) pagination.

Filters live in the URL, so a view can be shared; a bad value gets a clear message, never a
500. Pages are cut by (created_at, id) keyset, not OFFSET, so the hundredth page of 100,000
runs costs what the first does (an index on (created_at) covers it).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestrator.models import FailureMode, Run, RunStatus, StepAttempt
from orchestrator.models.runs import ACTIVE_ATTEMPT_STATUSES

PAGE_SIZE = 50
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@dataclass
class RunFilter:
    workflow: str = ""
    version: int | None = None
    status: str = ""
    failure_mode: str = ""
    window: str = ""
    text: str = ""
    fingerprint: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, query: QueryDict) -> RunFilter:
        found = cls(workflow=query.get("workflow", "").strip(), text=query.get("q", "").strip()[:200])
        status = query.get("status", "").strip()
        if status and status not in RunStatus.values:
            found.errors["status"] = f"unknown status {status!r}; use one of {', '.join(RunStatus.values)}"
        else:
            found.status = status
        mode = query.get("failure_mode", "").strip()
        if mode and mode not in FailureMode.values:
            found.errors["failure_mode"] = f"unknown failure mode {mode!r}"
        else:
            found.failure_mode = mode
        version = query.get("version", "").strip()
        if version:
            if version.isdigit() and int(version) > 0:
                found.version = int(version)
            else:
                found.errors["version"] = f"version must be a positive number, not {version!r}"
        fingerprint = query.get("fingerprint", "").strip()
        if fingerprint and not re.fullmatch(r"[0-9a-f]{16}", fingerprint):
            found.errors["fingerprint"] = "a failure fingerprint is 16 hexadecimal characters"
        else:
            found.fingerprint = fingerprint
        window = query.get("window", "").strip()
        if window and window not in WINDOWS:
            found.errors["window"] = f"unknown time range {window!r}; use one of {', '.join(WINDOWS)}"
        else:
            found.window = window
        return found

    @property
    def is_empty(self) -> bool:
        return not (self.workflow or self.version or self.status or self.failure_mode or self.window or self.text
                    or self.fingerprint)

    def as_query(self) -> dict[str, str]:
        """The filter as query parameters (for links that keep it)."""
        pairs = {"workflow": self.workflow, "version": str(self.version or ""), "status": self.status,
                 "failure_mode": self.failure_mode, "window": self.window, "q": self.text,
                 "fingerprint": self.fingerprint}
        return {key: value for key, value in pairs.items() if value}

    def describe(self) -> list[str]:
        """The filter in words, one part per field (for confirmations and saved views)."""
        parts = [f"workflow {self.workflow}"] if self.workflow else []
        parts += [f"version {self.version}"] if self.version else []
        parts += [f"status {self.status}"] if self.status else []
        parts += [f"failure mode {self.failure_mode}"] if self.failure_mode else []
        parts += [f"started in the last {self.window}"] if self.window else []
        parts += [f"fingerprint {self.fingerprint}"] if self.fingerprint else []
        parts += [f"text {self.text!r} in input or error"] if self.text else []
        return parts

    def apply(self, runs: QuerySet[Run], now: datetime | None = None) -> QuerySet[Run]:
        """Narrow ``runs`` to this filter; a time range counts back from ``now`` (default: now)."""
        if self.workflow:
            runs = runs.filter(workflow__name=self.workflow)
        if self.version:
            runs = runs.filter(version__number=self.version)
        if self.status:
            runs = runs.filter(status=self.status)
        if self.failure_mode:
            runs = runs.filter(failure_mode=self.failure_mode)
        if self.window:
            runs = runs.filter(created_at__gte=(now or timezone.now()) - WINDOWS[self.window])
        if self.fingerprint:
            runs = runs.filter(failure_fingerprint=self.fingerprint)
        if self.text:
            # Text in the input or in the error: a cast of the JSON to text works on both databases.
            runs = runs.filter(Q(input__icontains=self.text) | Q(error__icontains=self.text))
        return runs


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    next_cursor: str
    has_more: bool


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, run_id = raw.partition("|")
        moment = parse_datetime(when)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (moment, run_id) if moment and run_id else None


def runs_page(filters: RunFilter, cursor: str = "", size: int = PAGE_SIZE) -> Page:
    """One page of runs, newest first, after ``cursor`` (one query, plus its joins)."""
    runs = filters.apply(Run.objects.select_related("workflow", "version", "started_by"))
    after = decode_cursor(cursor) if cursor else None
    if after is not None:
        moment, run_id = after
        runs = runs.filter(Q(created_at__lt=moment) | Q(created_at=moment, id__lt=run_id))
    found = list(runs.order_by("-created_at", "-id")[: size + 1])
    has_more = len(found) > size
    found = found[:size]
    return Page(found, encode_cursor(found[-1]) if has_more and found else "", has_more)


def count_matching(filters: RunFilter) -> int:
    return filters.apply(Run.objects.all()).count()


def current_states(runs: list[Run]) -> dict[Any, list[str]]:
    """Where each live run is now: the states of its attempts under way (one query)."""
    live = [run.pk for run in runs if not run.is_terminal]
    where: dict[Any, list[str]] = {}
    if live:
        for run_id, state in (StepAttempt.objects.filter(run_id__in=live, status__in=ACTIVE_ATTEMPT_STATUSES)
                              .values_list("run_id", "state_name").order_by("id")):
            where.setdefault(run_id, []).append(state)
    return where
