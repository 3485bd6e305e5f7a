"""The demo delivery sink: a stand-in for the outside world (a payment API, a mail relay).

It lives outside the engine's database and transactions (its own SQLite file, autocommit),
and records every request it receives, so duplicate deliveries are counted at the sink,
not inferred from the engine's ledger. Like real payment APIs it honours an idempotency
key when the caller sends one: a repeated key is recorded as a replay, not delivered again.
"""

from __future__ import annotations

import json
import sqlite3
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


def _connect(path: str | None = None) -> sqlite3.Connection:
    path = path or ratchet_setting("SINK_PATH")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def deliver(key: str, kind: str, payload: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
    """Record one request. With an idempotency key seen before, replay instead of delivering."""
    conn = _connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        if idempotency_key:
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


def stats(path: str | None = None, key_prefix: str = "") -> dict[str, int]:
    """Counts at the sink: deliveries, distinct keys, keys delivered more than once, replays."""
    conn = _connect(path)
    try:
        like = key_prefix + "%"
        delivered, keys = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT key) FROM requests WHERE outcome='delivered' AND key LIKE ?", (like,)
        ).fetchone()
        duplicates = conn.execute(
            "SELECT COUNT(*) FROM (SELECT key FROM requests WHERE outcome='delivered' AND key LIKE ? "
            "GROUP BY key HAVING COUNT(*) > 1)", (like,)
        ).fetchone()[0]
        replays = conn.execute(
            "SELECT COUNT(*) FROM requests WHERE outcome='replayed' AND key LIKE ?", (like,)
        ).fetchone()[0]
    finally:
        conn.close()
    return {"delivered": delivered, "keys": keys, "duplicate_keys": duplicates, "replays": replays}


def deliveries(key: str, path: str | None = None) -> int:
    conn = _connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests WHERE key = ? AND outcome='delivered'",
                            (key,)).fetchone()[0]
    finally:
        conn.close()


def requests(key: str, path: str | None = None) -> int:
    conn = _connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests WHERE key = ?", (key,)).fetchone()[0]
    finally:
        conn.close()


def delivery_counts(path: str | None = None) -> dict[str, int]:
    """Deliveries per key (replays excluded): a key above 1 is a duplicate side effect."""
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT key, COUNT(*) FROM requests WHERE outcome='delivered' GROUP BY key")
        return dict(rows.fetchall())
    finally:
        conn.close()
