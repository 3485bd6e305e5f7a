"""PostgreSQL for the tests: the same backend, but emptying the tables between transactional
tests with DELETE instead of TRUNCATE.

Django's TransactionTestCase empties every table after each test. TRUNCATE rewrites each table's
files and costs about 0.4 s for Ratchet's 26 tables on this kind of machine; DELETE of the few
rows a test leaves costs 5 ms. Foreign keys are deferred (Django creates them DEFERRABLE), so
the order does not matter inside the flush's transaction. Content types and permissions, which
migrate creates and no test changes, are kept: the flush's post_migrate then finds them instead
of inserting them again. When sequences must restart, the stock TRUNCATE is used.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, operations

KEPT = frozenset({"django_content_type", "auth_permission"})


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style: Any, tables: Any, *, reset_sequences: bool = False,
                  allow_cascade: bool = False) -> list[str]:
        if not tables or reset_sequences:
            return super().sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        emptied = [table for table in tables if table not in KEPT]
        return ["SET CONSTRAINTS ALL DEFERRED", *(f"DELETE FROM {self.quote_name(table)}" for table in emptied)]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
