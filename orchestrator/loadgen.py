"""A synthetic run history, for measuring the pages at 100,000 runs (``manage.py load_history``).

Runs of the demo workflows spread over the last N days, each walked through its published
definition the way the engine would have (``loadgen_runs``): attempts of every task, agent and
wait state (branches of parallel states included), transient retries with backoff, lost
workers and resumes, the effects the demo handlers record, and the events the engine writes for
all of it. Outcomes are mostly successes; failures carry the failure mode, error, failure state
and fingerprint that ``runstate.fail_run`` stores; some runs are cancelled, a few are still
running (their attempt claimed, its lease in the future).

Writing is the expensive part: on PostgreSQL rows go in with COPY (several times faster than
INSERTs), elsewhere with ``bulk_create``. Ids are chosen here, after the tables' sequences, so
events can point at attempts without reading ids back. One transaction per batch of runs, so
an interrupted load leaves whole runs. Deterministic for a seed (times are relative to now).

Left out: lines and forks of parallel states (their attempts carry branch paths, which the run
page shows), model calls, approvals and child runs.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TextIO

from django.db import connection, models, transaction
from django.utils import timezone

from .demo import WORKFLOWS_DIR
from .engine.definition import definition_for_version
from .loadgen_runs import (
    ATTEMPT_COLUMNS,
    EFFECT_COLUMNS,
    EVENT_COLUMNS,
    FAILURES,
    RUN_COLUMNS,
    Built,
    Ids,
    Plan,
    RunBuilder,
    finish,
)
from .models import Effect, Event, Run, StepAttempt, Workflow

# Outcome shares of finished runs; "running" runs are a few, at the end of the window.
OUTCOMES = (("succeeded", 0.88), ("failed", 0.09), ("cancelled", 0.03))
RUNNING_SHARE, RUNNING_MAX = 0.001, 50
MIX_FLOOR = 0.25  # share of runs drawn from every workflow alike (see generate)
TABLES: tuple[tuple[type[models.Model], tuple[str, ...]], ...] = (
    (Run, RUN_COLUMNS), (StepAttempt, ATTEMPT_COLUMNS), (Event, EVENT_COLUMNS), (Effect, EFFECT_COLUMNS))


@dataclass
class LoadReport:
    runs: int = 0
    attempts: int = 0
    events: int = 0
    effects: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return self.runs + self.attempts + self.events + self.effects

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        mix = ", ".join(f"{n:,} {s}" for s, n in sorted(self.statuses.items()))
        return (f"loaded {self.runs:,} runs ({mix}), {self.attempts:,} attempts, {self.events:,} events, "
                f"{self.effects:,} effects in {self.seconds:.1f}s: {self.rows_per_s:,.0f} rows/s")


class ProgressLine:
    """A progress bar on one updating line (a line per tenth when the stream is not a terminal)."""

    def __init__(self, total: int, stream: TextIO | None, label: str = "loading runs") -> None:
        self.total, self.stream, self.label = total, stream, label
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.started, self.shown = time.monotonic(), -1

    def update(self, done: int, rows: int) -> None:
        if self.stream is None:
            return
        tenth = done * 10 // max(self.total, 1)
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        elapsed = max(time.monotonic() - self.started, 1e-9)
        filled = done * 30 // max(self.total, 1)
        eta = (self.total - done) * elapsed / done if done else 0.0
        text = (f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{self.total:,} "
                f"{rows / elapsed:,.0f} rows/s, {eta:.0f}s left")
        self.stream.write(f"\r{text}" if self.tty else f"{text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- writing ----------------------------------------------------------------------------------


def _next_ids() -> Ids:
    """Ids after every existing row (and after every id the sequences already handed out)."""
    found = []
    for model in (StepAttempt, Event, Effect):
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
            else:
                cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {connection.ops.quote_name(table)}")
            found.append(int(cursor.fetchone()[0]))
    return Ids(*found)


def _advance_sequences(ids: Ids) -> None:
    """On PostgreSQL, move the sequences past the ids used here, so later INSERTs do not collide."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model, next_id in ((StepAttempt, ids.attempt), (Event, ids.event), (Effect, ids.effect)):
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)",
                           [model._meta.db_table, next_id])


def _json_columns(model: type[models.Model], columns: tuple[str, ...]) -> list[int]:
    fields = {f.attname: f for f in model._meta.concrete_fields}
    return [i for i, name in enumerate(columns) if isinstance(fields[name], models.JSONField)]


def _copy(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple]) -> None:
    """COPY rows into the model's table (PostgreSQL); JSON goes in as its text."""
    json_at = _json_columns(model, columns)
    qn = connection.ops.quote_name
    column_of = {f.attname: f.column for f in model._meta.concrete_fields}
    sql = f"COPY {qn(model._meta.db_table)} ({', '.join(qn(column_of[c]) for c in columns)}) FROM STDIN"
    dumps = json.dumps
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            values = list(row)
            for i in json_at:
                if values[i] is not None:
                    values[i] = dumps(values[i])
            copy.write_row(values)


@contextmanager
def _explicit_created_at() -> Iterator[None]:
    """bulk_create would stamp Run.created_at with now (auto_now_add): keep the moment given."""
    created = Run._meta.get_field("created_at")
    saved = created.auto_now_add
    created.auto_now_add = False
    try:
        yield
    finally:
        created.auto_now_add = saved


def _bulk_create(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple]) -> None:
    with _explicit_created_at():
        model.objects.bulk_create([model(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=500)


def _write(batch: list[Built]) -> None:
    write = _copy if connection.vendor == "postgresql" else _bulk_create
    with transaction.atomic():
        write(Run, RUN_COLUMNS, [b.run for b in batch])
        write(StepAttempt, ATTEMPT_COLUMNS, [row for b in batch for row in b.attempts])
        write(Event, EVENT_COLUMNS, [row for b in batch for row in b.events])
        write(Effect, EFFECT_COLUMNS, [row for b in batch for row in b.effects])


def check_columns() -> None:
    """The loader writes every column of its tables: a new field must be added here too."""
    for model, columns in TABLES:
        missing = {f.attname for f in model._meta.concrete_fields} ^ set(columns)
        if missing:
            raise RuntimeError(f"loadgen does not match {model.__name__}: {sorted(missing)}")


# --- the load ---------------------------------------------------------------------------------


def ensure_demo_workflows() -> list[Plan]:
    """Publish the demo workflows (as ``load_demo`` does) and plan runs of their latest versions."""
    from .engine.workflows import import_file

    for path in sorted(WORKFLOWS_DIR.glob("*.y*ml")):
        import_file(path)
    plans = []
    for workflow in Workflow.objects.filter(name__in=[p.stem for p in WORKFLOWS_DIR.glob("*.y*ml")]).order_by("name"):
        version = workflow.latest_version()
        if version is None:
            continue
        plans.append(Plan(workflow.pk, version.pk, workflow.name, version.number, definition_for_version(version),
                          version.definition.get("sample_input") or {}))
    return plans


def _estimate(plans: list[Plan], seed: int | str) -> None:
    """The mean number of events of a succeeded run of each workflow (from a few dry builds)."""
    rng = random.Random(seed)
    for plan in plans:
        sizes = []
        for _ in range(20):
            builder = RunBuilder(rng, plan, "succeeded")
            builder.build()
            sizes.append(len(builder.run_events))
        plan.expected_events = sum(sizes) / len(sizes)


def _pick(rng: random.Random, weights: list[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in weights], [w for _, w in weights])[0]


def generate(runs: int, *, events_per_run: float, days: float, seed: int | str, now: datetime, ids: Ids,
             plans: list[Plan]) -> Iterator[Built]:
    """Built runs, one at a time.

    The workflow mix is steered toward ``events_per_run`` events per run on average: a share of
    runs (MIX_FLOOR) is drawn from every workflow alike, so each workflow, state and failure
    cluster shows up whatever the target; the rest are drawn among the workflows short enough
    for the events still owed. A target below what that share allows is overshot (with the
    demo workflows and a target of 10, by about a fifth).
    """
    rng = random.Random(seed)
    _estimate(plans, seed)
    span = days * 86400
    running = min(RUNNING_MAX, max(1 if runs >= 100 else 0, int(runs * RUNNING_SHARE)))
    made_events = 0
    by_size = sorted(plans, key=lambda p: p.expected_events)
    for n in range(runs):
        deficit = events_per_run * n - made_events
        fits = [p for p in by_size if p.expected_events <= events_per_run + max(deficit, 0)] or by_size[:1]
        plan = rng.choice(plans if rng.random() < MIX_FLOOR else fits)
        outcome = "running" if n >= runs - running else _pick(rng, list(OUTCOMES))
        failure = _pick(rng, [(m, float(w)) for m, w in FAILURES]) if outcome == "failed" else ""
        if failure and plan.name == "order_fulfilment" and rng.random() < 0.3:
            failure = "rejected"
        builder = RunBuilder(rng, plan, outcome, failure)
        builder.build()
        if outcome == "running":
            created = now - timedelta(seconds=builder.t + rng.uniform(5, 120))
        else:
            latest = max(span - builder.t - 60, 1.0)
            created = now - timedelta(seconds=span) + timedelta(seconds=rng.uniform(0, latest))
        run_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        built = finish(builder, run_id, created, ids, now)
        made_events += len(built.events)
        yield built


def load_history(runs: int, *, events_per_run: float = 10, days: float = 30, seed: int = 1,
                 batch_runs: int = 2000, stream: TextIO | None = sys.stderr, now: datetime | None = None) -> LoadReport:
    """Load ``runs`` runs of the demo workflows over the last ``days`` days (see the module docstring)."""
    if runs < 1 or events_per_run <= 0 or days <= 0:
        raise ValueError("runs, events per run and days must be positive")
    check_columns()
    now = now or timezone.now()
    plans = ensure_demo_workflows()
    if not plans:
        raise RuntimeError(f"no demo workflow found under {WORKFLOWS_DIR}")
    report, started = LoadReport(), time.monotonic()
    progress = ProgressLine(runs, stream)
    ids = _next_ids()
    # Appending with the same seed must not make the same run ids again.
    existing = Run.objects.count()
    key = seed if not existing else f"{seed}/{existing}"
    batch: list[Built] = []
    for built in generate(runs, events_per_run=events_per_run, days=days, seed=key, now=now, ids=ids, plans=plans):
        batch.append(built)
        report.runs += 1
        report.attempts += len(built.attempts)
        report.events += len(built.events)
        report.effects += len(built.effects)
        report.statuses[built.status] += 1
        if len(batch) >= batch_runs:
            _write(batch)
            _advance_sequences(ids)
            batch = []
            progress.update(report.runs, report.rows)
    if batch:
        _write(batch)
        _advance_sequences(ids)
    progress.update(report.runs, report.rows)
    progress.close()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # fresh statistics, or the planner guesses on empty tables
            cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(m._meta.db_table) for m, _ in TABLES))
    report.seconds = time.monotonic() - started
    return report
