"""A claim's read in one prepared statement (PostgreSQL): the attempt, its run with the row's
version (``xmin``, for fast_checkpoint.py) and the run's workflow version without its document
(the definition is cached by content hash), built into the model instances the ORM would
build. The ORM's own query for this costs more to compile than PostgreSQL takes to answer it,
and a claim is read once per job."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from ..models import Run, StepAttempt, WorkflowVersion
from .fast_checkpoint import ATTEMPT, RUN
from .prepared import execute_prepared
from .rows import fields_of

VERSION = WorkflowVersion._meta.db_table


def _columns(model: type[Model], skip: tuple[str, ...] = ()) -> list[Any]:
    return [field for field, _ in fields_of(model, skip)]


@cache
def _statement() -> tuple[str, tuple[list[Any], list[Any], list[Any]]]:
    attempt, run = _columns(StepAttempt), _columns(Run)
    version = _columns(WorkflowVersion, skip=("definition",))
    quote = connection.ops.quote_name
    select = [f"a.{quote(f.column)}" for f in attempt] + [f"r.{quote(f.column)}" for f in run] + [
        "r.xmin::text"] + [f"v.{quote(f.column)}" for f in version]
    sql = (f"SELECT {', '.join(select)} FROM {ATTEMPT} a JOIN {RUN} r ON r.id = a.run_id "
           f"JOIN {VERSION} v ON v.id = r.version_id WHERE a.id = %s")
    return sql, (attempt, run, version)


def attempt_columns() -> list[Any]:
    """The attempt's fields in the order the claim's read returns them."""
    return _statement()[1][0]


def build_model(model: type[Model], fields: list[Any], values: list[Any]) -> Model:
    """The instance the ORM would build from these columns' values."""
    converted = [field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
                 for field, value in zip(fields, values, strict=True)]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def read_for_claim(attempt_id: int) -> StepAttempt | None:
    """The attempt with its run (``run_xmin`` set) and the run's version, or None if it is gone."""
    sql, (attempt_fields, run_fields, version_fields) = _statement()
    row = execute_prepared(sql, [attempt_id])
    if row is None:
        return None
    values = list(row)
    cut, xmin_at = len(attempt_fields), len(attempt_fields) + len(run_fields)
    attempt = build_model(StepAttempt, attempt_fields, values[:cut])
    run = build_model(Run, run_fields, values[cut:xmin_at])
    version = build_model(WorkflowVersion, version_fields, values[xmin_at + 1:])
    Run._meta.get_field("version").set_cached_value(run, version)
    StepAttempt._meta.get_field("run").set_cached_value(attempt, run)
    attempt.run_xmin = values[xmin_at]  # type: ignore[attr-defined]
    return attempt  # type: ignore[return-value]
