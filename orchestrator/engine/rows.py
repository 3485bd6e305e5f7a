"""Model instances as JSON rows: many rows in one parameter of one statement (PostgreSQL's
``jsonb_populate_recordset``), instead of one placeholder per value.

Django compiles a bulk INSERT with a placeholder for every value of every row and psycopg then
adapts each; for a fan-out's hundred attempts that costs more than PostgreSQL takes to insert
them. Here the rows are one JSON array, prepared once per shape and cast by PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import cache
from operator import attrgetter
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import DateField, DateTimeField, Field, Model

from ..models import Event
from .prepared import fetch_all_prepared


@cache
def fields_of(model: type[Model], skip: tuple[str, ...]) -> tuple[tuple[Any, str], ...]:
    """(field, quoted column) of each column of ``model`` but ``skip``."""
    return tuple((field, connection.ops.quote_name(field.column))
                 for field in model._meta.concrete_fields if field.column not in skip)


def columns_of(model: type[Model], skip: tuple[str, ...] = ("id",)) -> str:
    return ", ".join(column for _, column in fields_of(model, skip))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} in a row")


@cache
def _reader(model: type[Model], skip: tuple[str, ...]) -> tuple[tuple[str, ...], Callable[[Model], Any]]:
    """The JSON keys of ``model``'s row and a function of an instance to its values, in one
    call (a step writes a few rows; reading them field by field was a tenth of its CPU). A
    field that sets its value when saved (``auto_now``, a file) is asked, as a save would."""
    fields = fields_of(model, skip)
    keys = tuple(column[1:-1] for _, column in fields)
    if all(_plain(field) for field, _ in fields):
        get = attrgetter(*(field.attname for field, _ in fields))
        return keys, (get if len(fields) > 1 else lambda obj: (get(obj),))
    return keys, lambda obj: tuple(field.pre_save(obj, True) for field, _ in fields)


def _plain(field: Any) -> bool:
    """Does saving ``field`` store its attribute as it is (``Field.pre_save``)?"""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return False
    return type(field).pre_save in (Field.pre_save, DateField.pre_save, DateTimeField.pre_save)


def rows_json(objs: list[Model], skip: tuple[str, ...] = ("id",), **override: Any) -> str:
    """Rows as one JSON array keyed by column, for jsonb_populate_recordset: one parameter for
    many values (psycopg then reuses its parse of the statement, and PostgreSQL casts each)."""
    rows = []
    for obj in objs:
        keys, values = _reader(type(obj), skip)
        row = dict(zip(keys, values(obj), strict=True))
        if override:
            row.update(override.get(str(id(obj)), ()))
        rows.append(row)
    # ASCII: a lone surrogate stays an escape, which PostgreSQL refuses (the general path then
    # fails the attempt, as it does for such an output).
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


def row_json(obj: Model) -> str:
    """One instance as the JSON object ``rows_json`` makes of it (for ``jsonb_populate_record``)."""
    return rows_json([obj])[1:-1]


def insert_events(source: str, attempt_id: str = "e.attempt_id") -> str:
    """An INSERT of the events of one JSON parameter (``rows_json``), in their order, once per
    row of the CTE ``source`` (none when it has none); ``attempt_id``: the SQL of their attempt."""
    columns = columns_of(Event, skip=("id", "attempt_id"))
    return f"""INSERT INTO {Event._meta.db_table} ({columns}, attempt_id)
            SELECT {columns}, {attempt_id}
            FROM ROWS FROM (jsonb_populate_recordset(NULL::{Event._meta.db_table}, %s::jsonb)) WITH ORDINALITY e,
                 {source}
            ORDER BY e.ordinality"""


@cache
def _insert_sql(model: type[Model]) -> str:
    table, columns = model._meta.db_table, columns_of(model)
    return (f"INSERT INTO {table} ({columns}) SELECT {columns} "
            f"FROM ROWS FROM (jsonb_populate_recordset(NULL::{table}, %s::jsonb)) WITH ORDINALITY e "
            f"ORDER BY e.ordinality RETURNING id")


def insert_rows(objs: list[Model]) -> None:
    """``bulk_create`` of unsaved instances of one model in one statement and one parameter
    (PostgreSQL): their related objects' keys copied as bulk_create copies them, and their
    primary keys set in the order they were inserted."""
    if not objs:
        return
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    ids = fetch_all_prepared(_insert_sql(type(objs[0])), [rows_json(objs)])
    for obj, (pk,) in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, connection.alias


def bulk_insert(objs: list[Model]) -> None:
    """Insert unsaved instances of one model, their primary keys set: in one JSON parameter on
    PostgreSQL, by ``bulk_create`` elsewhere."""
    if not objs:
        return
    if connection.vendor == "postgresql":
        insert_rows(objs)
    else:
        type(objs[0]).objects.bulk_create(objs)  # type: ignore[attr-defined]
