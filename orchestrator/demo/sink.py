"""The demo delivery sink: a stand-in for the outside world (a payment API, a mail relay).

It lives outside the engine's database and transactions (its own SQLite file, autocommit),
and records every request it receives, so duplicate deliveries are counted at the sink,
not inferred from the engine's ledger. Like real payment APIs it honours an idempotency
key when the caller sends one (a repeated key is recorded as a replay, not delivered
again), and it can be asked whether a key was delivered (``lookup``: what ``check`` uses).

Strict (``RATCHET_SINK_STRICT=1``, what ``chaos --strict`` sets): it deduplicates nothing,
so every request is a delivery and a broken ledger shows up as a key delivered twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..conf import ratchet_setting

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    payload TEXT,
    at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS requests_key ON requests (key);
"""


_READY: set[str] = set()


def _connect(path: str | None = None) -> sqlite3.Connection:
    path = path or ratchet_setting("SINK_PATH")
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    if path not in _READY:  # once per file and process: this sits on every delivery's path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _set_up(conn)
        _READY.add(path)
    return conn


def _set_up(conn: sqlite3.Connection) -> None:
    """WAL and the schema. Two workers delivering for the first time at once may both get here;
    switching to WAL takes an exclusive lock that SQLite's busy timeout does not always wait for,
    so a "database is locked" is waited out here instead of failing the delivery."""
    for _ in range(100):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    raise sqlite3.OperationalError(f"the sink at {conn} stayed locked")


def _rows(sql: str, params: tuple = (), path: str | None = None) -> list[tuple]:
    conn = _connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def strict() -> bool:
    return os.environ.get("RATCHET_SINK_STRICT", "").strip().lower() in {"1", "true", "yes", "on"}


def deliver(key: str, kind: str, payload: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
    """Record one request. With an idempotency key seen before, replay instead of delivering
    (unless the sink is strict: then every request is delivered)."""
    conn = _connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        if idempotency_key and not strict():
            row = conn.execute(
                "SELECT id FROM requests WHERE key = ? AND outcome = 'delivered' ORDER BY id LIMIT 1",
                (key,),
            ).fetchone()
            if row:
                conn.execute("INSERT INTO requests (key, kind, outcome, payload) VALUES (?, ?, 'replayed', ?)",
                             (key, kind, json.dumps(payload)))
                conn.execute("COMMIT")
                return {"delivery": row[0], "replayed": True}
        cursor = conn.execute("INSERT INTO requests (key, kind, outcome, payload) VALUES (?, ?, 'delivered', ?)",
                              (key, kind, json.dumps(payload)))
        conn.execute("COMMIT")
        return {"delivery": cursor.lastrowid, "replayed": False}
    finally:
        conn.close()


def lookup(key: str, path: str | None = None) -> dict[str, Any] | None:
    """The first delivery under ``key``, as ``deliver`` reported it, or None: what a payment
    API's "look up by idempotency key" answers."""
    rows = _rows("SELECT id FROM requests WHERE key = ? AND outcome = 'delivered' ORDER BY id LIMIT 1", (key,), path)
    return {"delivery": rows[0][0], "replayed": False} if rows else None


def stats(path: str | None = None) -> dict[str, int]:
    """Counts at the sink: deliveries, distinct keys, keys delivered more than once, replays."""
    counts = delivery_counts(path)
    replays = _rows("SELECT COUNT(*) FROM requests WHERE outcome = 'replayed'", path=path)[0][0]
    return {"delivered": sum(counts.values()), "keys": len(counts),
            "duplicate_keys": sum(1 for n in counts.values() if n > 1), "replays": replays}


def deliveries(key: str, path: str | None = None) -> int:
    """How many times the effect under ``key`` really happened (replays excluded)."""
    return _rows("SELECT COUNT(*) FROM requests WHERE key = ? AND outcome = 'delivered'", (key,), path)[0][0]


def requests(key: str, path: str | None = None) -> int:
    """How many requests arrived for ``key``, replays included."""
    return _rows("SELECT COUNT(*) FROM requests WHERE key = ?", (key,), path)[0][0]


def delivery_counts(path: str | None = None) -> dict[str, int]:
    """Deliveries per key (replays excluded): a key above 1 is a duplicate side effect."""
    return dict(_rows("SELECT key, COUNT(*) FROM requests WHERE outcome = 'delivered' GROUP BY key", path=path))


def arrivals(kind: str, path: str | None = None) -> list[float]:
    """When each request of ``kind`` arrived (Unix seconds, millisecond precision), oldest first:
    what a rate-limited tool observed."""
    rows = _rows("SELECT (julianday(at) - 2440587.5) * 86400.0 FROM requests WHERE kind = ? ORDER BY at, id",
                 (kind,), path)
    return [row[0] for row in rows]


def payloads(kind: str, path: str | None = None) -> list[Any]:
    """What was delivered of ``kind`` (replays excluded), oldest first."""
    rows = _rows("SELECT payload FROM requests WHERE kind = ? AND outcome = 'delivered' ORDER BY id", (kind,), path)
    return [json.loads(row[0]) for row in rows]


def kinds(path: str | None = None) -> list[str]:
    """The kind of every delivery, in the order they arrived (replays excluded)."""
    return [row[0] for row in _rows("SELECT kind FROM requests WHERE outcome = 'delivered' ORDER BY id", path=path)]
