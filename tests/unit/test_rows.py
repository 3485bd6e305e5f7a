"""Model instances as JSON rows (engine/rows.py): every column, as a save would store it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from orchestrator.engine.rows import rows_json
from orchestrator.models import Event, Run


def test_a_row_holds_every_column_but_the_skipped_with_its_value():
    at = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    event = Event(run_id=7, attempt_id=9, kind="step_succeeded", state_name="s", data={"a": 1}, created_at=at)
    (row,) = json.loads(rows_json([event]))
    columns = {field.column for field in Event._meta.concrete_fields} - {"id"}
    assert set(row) == columns
    assert row["run_id"] == 7 and row["attempt_id"] == 9 and row["data"] == {"a": 1}
    assert row["created_at"] == at.isoformat() and row["actor_id"] is None


def test_a_column_given_by_the_caller_replaces_the_instance_s():
    events = [Event(run_id=1, kind="k", created_at=datetime(2026, 1, 1, tzinfo=UTC)) for _ in range(2)]
    rows = json.loads(rows_json(events, **{str(id(events[1])): {"attempt_id": -1}}))
    assert [row["attempt_id"] for row in rows] == [None, -1]


def test_a_field_that_sets_itself_on_save_is_asked_as_a_save_would():
    run = Run(workflow_id=1, version_id=1)  # created_at: auto_now_add
    (row,) = json.loads(rows_json([run]))
    assert row["created_at"] is not None and run.created_at is not None
