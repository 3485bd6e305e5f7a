"""Failure fingerprints: the same cause gives the same fingerprint, whatever ids, numbers or
quoted values its message carries, so the failure dashboard can group runs by cause."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_PATTERNS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<value>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalised(message: str) -> str:
    """The message with its ids, numbers and quoted values replaced by placeholders."""
    text = message[:500]
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text.strip()


def fingerprint(error: dict[str, Any] | None, state_name: str = "") -> str:
    """16 hex characters naming the cause: the state, the error type and the normalised message."""
    error = error or {}
    key = "|".join((state_name, str(error.get("type", "")), normalised(str(error.get("message", "")))))
    return hashlib.sha256(key.encode()).hexdigest()[:16]
