"""Rate limits and circuit breakers on an agent's tools (engine/tool_guards.py): the visit that
would call a limited tool is put back (no worker held, not a retry) until its slot comes, and
a tool's failures open its breaker for every run's visits."""

from __future__ import annotations

import pytest

from orchestrator.demo import sink
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Event, EventKind, RunStatus, StepAttempt

from .test_transitions import drain

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _engine(redis_conn, sink_path, fast_engine):
    """Real Redis (flushed), a private sink and short leases for every test here."""


def agent_flow(name: str, model: str, tools: list[str], **fields) -> str:
    publish({"name": name, "start_at": "agent", "budgets": {"max_steps": 10}, "states": {
        "agent": {"type": "agent", "provider": "offline", "model": model, "tools": tools, "end": True,
                  "input_path": "input", **fields}}})
    return name


def test_calls_of_a_limited_tool_are_spaced_at_its_rate_without_retries(settings, sink_path):
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {"test.add": {"rate": 4, "burst": 1}}}
    agent_flow("adding", "test.adder", ["test.add"])
    runs = [start_run("adding", {"pairs": [[i, 1], [i, 2]]})[0] for i in range(4)]
    finished = [drain(run, every_run=True) for run in runs]
    assert [run.status for run in finished] == [RunStatus.SUCCEEDED] * 4
    assert [run.output["data"]["total"] for run in finished] == [2 * i + 3 for i in range(4)]
    assert not StepAttempt.objects.exclude(status=AttemptStatus.SUCCEEDED).exists()
    assert set(StepAttempt.objects.values_list("attempt", flat=True)) == {1}  # put back, never retried
    throttled = Event.objects.filter(kind=EventKind.THROTTLED)
    assert throttled.count() >= 3 and {e.data["handler"] for e in throttled} == {"test.add"}
    calls = sink.arrivals("tool_call", sink_path)
    assert len(calls) == 8 and calls[-1] - calls[0] >= 7 * 0.25 - 0.05  # the tool saw at most 4 a second
    answers = sink.arrivals("model_call", sink_path)
    assert len(answers) == 12  # three turns a run, each answer paid once (a put-back visit replays it)


def test_a_failing_tool_opens_its_breaker_and_other_runs_visits_are_held_back(settings, sink_path):
    settings.RATCHET = {**settings.RATCHET, "CIRCUIT_BREAKERS": {"test.down": {"failures": 2, "open_seconds": 30}}}
    agent_flow("calling", "test.tool_caller", ["test.down"])
    failing = [drain(start_run("calling", {"tool": "test.down", "n": i})[0], every_run=True) for i in range(2)]
    assert [run.status for run in failing] == [RunStatus.FAILED] * 2
    assert Event.objects.filter(kind=EventKind.BREAKER_OPENED).count() == 1
    held = start_run("calling", {"tool": "test.down", "up": True})[0]
    with pytest.raises(AssertionError, match="did not settle"):
        drain(held, timeout=1.5, every_run=True)
    assert Event.objects.filter(run=held, kind=EventKind.CIRCUIT_OPEN, data__handler="test.down").exists()
    assert len(sink.arrivals("down_tool", sink_path)) == 2  # the held-back visit never called it
