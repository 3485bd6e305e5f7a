"""Statements sent with server-side parameters and prepared once per connection (PostgreSQL):
one at a time, or several as one transaction in one round trip (psycopg's pipeline mode).

Their text is the same for every step of the same shape, so PostgreSQL parses and plans each
once per connection instead of once per step. They are logged as Django logs its own
statements, so the tests that count a path's statements count these too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg
from django.db import connection, transaction

from ..conf import ratchet_setting

PREPARE_THRESHOLD = 5  # psycopg's default; only the server-binding cursors here ever prepare


def _connection() -> tuple[psycopg.Connection[Any], bool]:
    """The raw connection, with preparing switched on when it is wanted."""
    connection.ensure_connection()
    raw = connection.connection
    prepare = bool(ratchet_setting("FAST_CHECKPOINT_PREPARED"))
    if prepare and raw.prepare_threshold is None:
        # Django opens connections with psycopg's preparing off (None), which makes
        # ``prepare=True`` a silent no-op. Any threshold switches it back on; Django's own
        # cursors bind on the client and never prepare, so only these statements are.
        raw.prepare_threshold = PREPARE_THRESHOLD
    return raw, prepare


@contextmanager
def _logged(cursor: psycopg.Cursor[Any], sql: str, params: list[Any]) -> Iterator[None]:
    if connection.queries_logged:
        with connection.make_debug_cursor(cursor).debug_sql(sql, params, use_last_executed_query=False):
            yield
    else:
        yield


def execute_prepared(sql: str, params: list[Any]) -> tuple[Any, ...]:
    """Run one statement; its first row."""
    raw, prepare = _connection()
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        with _logged(cursor, sql, params):
            cursor.execute(sql, params, prepare=prepare)
        return cursor.fetchone()  # type: ignore[return-value]


def fetch_all_prepared(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run one statement; all its rows."""
    raw, prepare = _connection()
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        with _logged(cursor, sql, params):
            cursor.execute(sql, params, prepare=prepare)
        return cursor.fetchall()


def execute_in_one_trip(statements: list[tuple[str, list[Any]]]) -> list[tuple[Any, ...] | None]:
    """Run the statements in order as one transaction, sent and answered in one round trip
    instead of one each plus the BEGIN and the COMMIT; the first row of each. Inside a caller's
    transaction they run one by one in a savepoint instead."""
    if connection.in_atomic_block:
        with transaction.atomic(savepoint=True):
            return [execute_prepared(sql, params) for sql, params in statements]
    raw, prepare = _connection()
    cursors = [psycopg.Cursor(raw) for _ in statements]
    try:
        with connection.wrap_database_errors:
            with raw.pipeline():
                raw.execute("BEGIN")
                for cursor, (sql, params) in zip(cursors, statements, strict=True):
                    with _logged(cursor, sql, params):
                        cursor.execute(sql, params, prepare=prepare)
                raw.execute("COMMIT")
            return [cursor.fetchone() for cursor in cursors]
    except Exception:
        if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raw.execute("ROLLBACK")  # a statement failed: the pipeline skipped the COMMIT
        raise
    finally:
        for cursor in cursors:
            cursor.close()


def in_transaction() -> Any:
    """Inside a caller's transaction (tests, mostly), a savepoint; else nothing: the one
    statement commits on its own."""
    return transaction.atomic(savepoint=True) if connection.in_atomic_block else nullcontext()
