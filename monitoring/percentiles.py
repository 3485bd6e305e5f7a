"""SQL building blocks for the KPIs: durations in seconds and time buckets as database
expressions, and ``percentile_cont`` on any database.

On PostgreSQL a percentile is the database's own ordered-set aggregate (all percentiles of a
value from one sort); elsewhere (SQLite has none) the same figure comes from a ``ROW_NUMBER()``
window and a count per group, in one query. Durations are exact to the microsecond on both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import NotSupportedError, connections
from django.db.models import (
    Aggregate,
    BigIntegerField,
    Count,
    DateTimeField,
    Expression,
    F,
    Field,
    FloatField,
    Func,
    QuerySet,
)

# --- SQL building blocks ---------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(p) WITHIN GROUP (ORDER BY expr)``; NULLs are ignored.

    Given a list of percentiles it computes them all from one sort and returns a list
    (``percentile_cont(ARRAY[...])``), which is what ``percentiles()`` uses.
    """

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    arity = 1

    def __init__(self, expression: Any, percentile: float | Sequence[float], **extra: Any) -> None:
        many = not isinstance(percentile, int | float)
        values = [float(p) for p in (percentile if many else [percentile])]
        if not all(0 <= p <= 1 for p in values):
            raise ValueError(f"a percentile is between 0 and 1, not {percentile}")
        sql = f"ARRAY[{', '.join(map(repr, values))}]::double precision[]" if many else repr(values[0])
        # A list comes back as a list: a plain Field converts nothing (FloatField would float() it).
        super().__init__(expression, percentile=sql, output_field=Field() if many else FloatField(), **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        raise NotSupportedError("SQLite has no percentile_cont: use percentiles(), which falls back to windows")


class EpochMicros(Func):
    """A timestamp as integer microseconds since the Unix epoch, exact on both databases.

    SQLite stores Django datetimes as text (``YYYY-MM-DD HH:MM:SS[.ffffff]``, UTC); its date
    functions keep only milliseconds and round fractional seconds, so the whole seconds and
    the microseconds are read separately.
    """

    output_field = BigIntegerField()
    arity = 1
    template = "CAST(EXTRACT(EPOCH FROM %(expressions)s) * 1000000 AS BIGINT)"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"(CAST(strftime('%%s', substr({sql}, 1, 19)) AS INTEGER) * 1000000"
            f" + CAST(substr({sql}, 21, 6) AS INTEGER))",
            [*params, *params],
        )


class SecondsBetween(Func):
    """``end - start`` in seconds (float), exact to the microsecond; NULL when either is NULL."""

    output_field = FloatField()
    arity = 2

    def __init__(self, start: Any, end: Any) -> None:
        super().__init__(start, end)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (start, start_params), (end, end_params) = (compiler.compile(e) for e in self.source_expressions)
        # PostgreSQL: date_part() of the interval is computed in double precision from its integer
        # microseconds (one correctly rounded division for durations under a day), half the cost
        # of EXTRACT's numeric result cast to double; it matters over 280,000 attempts.
        return f"date_part('epoch', {end} - {start})", [*end_params, *start_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        start, end = self.source_expressions
        end_sql, end_params = compiler.compile(EpochMicros(end))
        start_sql, start_params = compiler.compile(EpochMicros(start))
        return f"(({end_sql} - {start_sql}) / 1000000.0)", [*end_params, *start_params]


def seconds_between(start: Any, end: Any) -> Expression:
    """``end - start`` in seconds: a field name, F() or any datetime expression for each."""
    return SecondsBetween(F(start) if isinstance(start, str) else start, F(end) if isinstance(end, str) else end)


class BucketIndex(Func):
    """Which bucket of a series a timestamp falls in: ``(a * offset + b) / c`` in integers,
    ``offset`` being microseconds since the series' start. Integer arithmetic keeps bucket
    edges exact (a row at an edge belongs to the later bucket, as in the report)."""

    output_field = BigIntegerField()
    arity = 1

    def __init__(self, column: Any, *, origin: int, a: int, b: int, c: int) -> None:
        super().__init__(EpochMicros(column))
        self.coefficients = (int(origin), int(a), int(b), int(c))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        origin, a, b, c = self.coefficients
        return f"(({a} * ({sql} - {origin}) + {b}) / {c})", list(params)


class DateBin(Func):
    """PostgreSQL's ``date_bin(width, ts, origin)``: the start of the bucket ``ts`` falls in, in
    integer microseconds inside the database (a row at an edge belongs to the later bucket, as
    with BucketIndex). Several times cheaper per row than BucketIndex's numeric epoch; only for
    whole-microsecond widths, and only on PostgreSQL (14+)."""

    output_field = DateTimeField()
    arity = 1

    def __init__(self, column: Any, *, width: timedelta, origin: datetime) -> None:
        super().__init__(column)
        self.width, self.origin = width, origin

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"date_bin(%s::interval, {sql}, %s::timestamptz)", [self.width, *params, self.origin]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        raise NotSupportedError("SQLite has no date_bin: use BucketIndex")


def _label(p: float) -> str:
    return f"p{p * 100:g}".replace(".", "_")


def percentiles(
    qs: QuerySet,
    values: Mapping[str, Any],
    ps: Sequence[float],
    group: Mapping[str, Any] | None = None,
    *,
    portable: bool | None = None,
) -> dict[tuple[Any, ...] | None, dict[str, Any]]:
    """Percentiles (``percentile_cont``) of each value expression over ``qs``, in ONE query.

    Returns ``{group key: {"<name>_n": count, "<name>_p50": ..., ...}}``: the key is the tuple
    of ``group`` values, or ``None`` without ``group`` (then there is always exactly one entry,
    with counts 0 and percentiles ``None`` when ``qs`` is empty). NULL values are left out, as
    ``percentile_cont`` does. ``portable`` forces the window-function path (the one SQLite
    uses) on any database; by default PostgreSQL uses its ordered-set aggregate.
    """
    ps = [float(p) for p in ps]
    group = dict(group or {})
    gcols = [f"kg_{name}" for name in group]
    annotated = qs.annotate(
        **{f"kg_{k}": e for k, e in group.items()}, **{f"kv_{k}": e for k, e in values.items()}
    ).order_by()
    connection = connections[qs.db]
    if portable is None:
        portable = connection.vendor != "postgresql"
    if portable:
        return _window_percentiles(annotated, list(values), ps, gcols, connection)
    aggregates: dict[str, Any] = {}
    for name in values:
        aggregates[f"{name}_n"] = Count(f"kv_{name}")
        aggregates[f"{name}_ps"] = PercentileCont(f"kv_{name}", ps)
    rows = [annotated.aggregate(**aggregates)] if not group else annotated.values(*gcols).annotate(**aggregates)
    result: dict[tuple[Any, ...] | None, dict[str, Any]] = {}
    for row in rows:
        figures: dict[str, Any] = {}
        for name in values:
            figures[f"{name}_n"] = row[f"{name}_n"]
            found = row[f"{name}_ps"] or [None] * len(ps)
            figures.update({f"{name}_{_label(p)}": v for p, v in zip(ps, found, strict=True)})
        result[tuple(row[g] for g in gcols) if group else None] = figures
    return result


def _window_percentiles(
    annotated: QuerySet, names: list[str], ps: Sequence[float], gcols: list[str], connection: Any
) -> dict[tuple[Any, ...] | None, dict[str, Any]]:
    """percentile_cont from ``ROW_NUMBER()``: with ``n`` non-NULL values in a group, ``p`` sits
    at rank ``p * (n - 1)`` (from 0); interpolate between its floor and the next rank, as
    PostgreSQL does. Only the rows at those ranks reach the final aggregate.

    ``s`` holds the rows, ``k`` the count per group, ``w`` the ranks, ``m`` the values at the
    ranks wanted; ``k LEFT JOIN m`` keeps a group whose values are all NULL (n = 0).
    """
    qn = connection.ops.quote_name
    sqlite = connection.vendor == "sqlite"
    inner_sql, params = annotated.values(*gcols, *(f"kv_{n}" for n in names)).query.get_compiler(
        connection=connection
    ).as_sql()

    def floor(sql: str) -> str:
        # Only ever applied to p * (n - 1) >= 0, or to -p when n = 0 (no rank matches then
        # either way): truncating is flooring, and SQLite may lack FLOOR().
        return f"CAST({sql} AS INTEGER)" if sqlite else f"FLOOR({sql})"

    def same_group(left: str, right: str) -> str:
        if not gcols:
            return "1 = 1"
        op = "IS" if sqlite else "IS NOT DISTINCT FROM"  # NULL-safe: a NULL group is a group
        return " AND ".join(f"{left}.{qn(g)} {op} {right}.{qn(g)}" for g in gcols)

    g_list = ", ".join(qn(g) for g in gcols)
    g_sel = "".join(f"{qn(g)}, " for g in gcols)
    partition = f"PARTITION BY {g_list} " if gcols else ""
    group_by = f" GROUP BY {g_list}" if gcols else ""
    counts = ", ".join(f"COUNT({qn('kv_' + n)}) AS {qn('c_' + n)}" for n in names)
    ranks = ", ".join(
        f"{qn('kv_' + n)}, ROW_NUMBER() OVER ({partition}ORDER BY {qn('kv_' + n)} ASC NULLS LAST) - 1 AS {qn('r_' + n)}"
        for n in names
    )
    wanted, picks, finals = [], [], []
    for n in names:
        v, r, c = f"w.{qn('kv_' + n)}", f"w.{qn('r_' + n)}", f"k.{qn('c_' + n)}"
        finals.append(f"{c} AS {qn(n + '_n')}")
        for i, p in enumerate(ps):
            pos = f"({p!r} * ({c} - 1))"
            lo, hi = qn(f"lo_{n}_{i}"), qn(f"hi_{n}_{i}")
            wanted += [f"{r} = {floor(pos)}", f"{r} = {floor(pos)} + 1"]
            picks.append(f"MAX(CASE WHEN {r} = {floor(pos)} THEN {v} END) AS {lo}")
            picks.append(f"MAX(CASE WHEN {r} = {floor(pos)} + 1 THEN {v} END) AS {hi}")
            finals.append(
                f"m.{lo} + (COALESCE(m.{hi}, m.{lo}) - m.{lo}) * ({pos} - {floor(pos)}) AS {qn(n + '_' + _label(p))}"
            )
    m_groups = "".join(f"w.{qn(g)}, " for g in gcols)
    sql = (
        f"WITH s AS ({inner_sql}), "
        f"k AS (SELECT {g_sel}{counts} FROM s{group_by}), "
        f"w AS (SELECT {g_sel}{ranks} FROM s), "
        f"m AS (SELECT {m_groups}{', '.join(picks)} FROM w INNER JOIN k ON {same_group('w', 'k')} "
        f"WHERE {' OR '.join(wanted)}{' GROUP BY ' + m_groups.rstrip(', ') if gcols else ''}) "
        f"SELECT {''.join(f'k.{qn(g)}, ' for g in gcols)}{', '.join(finals)} "
        f"FROM k LEFT JOIN m ON {same_group('m', 'k')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        columns = [col[0] for col in cursor.description]
        rows = cursor.fetchall()
    result: dict[tuple[Any, ...] | None, dict[str, Any]] = {}
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        key = tuple(record.pop(g) for g in gcols) if gcols else None
        result[key] = {k: (float(v) if v is not None and not k.endswith("_n") else v) for k, v in record.items()}
    return result
