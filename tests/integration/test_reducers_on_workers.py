"""Every reducer under every conflict policy on real worker processes: the join fires once,
and each disagreement is recorded with the values that disagreed."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.demo import sink
from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.runs import start_run
from orchestrator.models import (
    AttemptStatus,
    EventKind,
    FailureMode,
    Fork,
    ForkStatus,
    RunStatus,
)

from ..workflows import finished
from .real_workers import (
    answer,
    assert_quiet,
    branch,
    count,
    events,
    fan_out,
    settle,
    slow,
    start_pool,
)

pytestmark = [pytest.mark.engine, pytest.mark.integration]


# --- every reducer under every conflict policy ------------------------------------------------------

POLICIES = ("error", "prefer_first", "prefer_last", "vote")
# Branch outputs per strategy. Four branches disagree so that each policy picks differently:
# prefer_first takes a, prefer_last d (alphabetical branch order), vote the value two share.
OUTPUTS: dict[str, dict[str, Any]] = {
    "collect": {"a": {"k": 1}, "b": {"k": 2}, "c": {"k": 2}, "d": {"k": 3}},
    "merge": {b: {"k": k, "same": "s"} for b, k in (("a", 1), ("b", 2), ("c", 2), ("d", 3))},
    "highest_score": {"a": {"score": 0.9, "text": "x"}, "b": {"score": 0.9, "text": "y"},
                      "c": {"score": 0.9, "text": "y"}, "d": {"score": 0.9, "text": "w"},
                      "e": {"score": 0.1, "text": "low"}},
    "majority_vote": {"a": {"label": "x"}, "b": {"label": "y"}, "c": {"label": "x"}, "d": {"label": "y"}},
    "custom": {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}, "d": {"n": 4}},
}
LEADERS = {b: OUTPUTS["highest_score"][b] for b in "abcd"}
# (value joined, the conflict recorded as (key, values, chosen)) per strategy and policy; a
# conflict without a value is one the policy cannot settle: the join fails.
MERGE_VALUES = {"a": 1, "b": 2, "c": 2, "d": 3}
VOTES = {b: out["label"] for b, out in OUTPUTS["majority_vote"].items()}
EXPECTED: dict[tuple[str, str], tuple[Any, tuple[str, dict[str, Any], Any] | None]] = {
    **{("collect", p): (OUTPUTS["collect"], None) for p in POLICIES},
    **{("custom", p): ({"n": 10, "from": ["a", "b", "c", "d"]}, None) for p in POLICIES},
    ("merge", "error"): (None, ("k", MERGE_VALUES, None)),
    ("merge", "prefer_first"): ({"k": 1, "same": "s"}, ("k", MERGE_VALUES, 1)),
    ("merge", "prefer_last"): ({"k": 3, "same": "s"}, ("k", MERGE_VALUES, 3)),
    ("merge", "vote"): ({"k": 2, "same": "s"}, ("k", MERGE_VALUES, 2)),
    ("highest_score", "error"): (None, ("score", LEADERS, None)),
    ("highest_score", "prefer_first"): (LEADERS["a"], ("score", LEADERS, LEADERS["a"])),
    ("highest_score", "prefer_last"): (LEADERS["d"], ("score", LEADERS, LEADERS["d"])),
    ("highest_score", "vote"): (LEADERS["b"], ("score", LEADERS, LEADERS["b"])),
    ("majority_vote", "error"): (None, ("vote", VOTES, None)),
    ("majority_vote", "prefer_first"): ("x", ("vote", VOTES, "x")),
    ("majority_vote", "prefer_last"): ("y", ("vote", VOTES, "y")),
}


def reducer_spec(strategy: str, policy: str) -> dict[str, Any]:
    spec = {"strategy": strategy, "on_conflict": policy}
    if strategy == "custom":
        spec["handler"] = "test.sum"
    if strategy == "majority_vote":
        spec["path"] = "label"
    return spec


def reducer_branches(outputs: dict[str, Any]) -> dict[str, Any]:
    """One step per branch. Branch a is the slowest (it usually finishes last): "first" and "last"
    still mean the alphabetical branch order, not the order the workers finished them in."""
    return {b: branch((f"{b}_out", slow(out, 0.2) if b == "a" else answer(out))) for b, out in outputs.items()}


def test_every_reducer_under_every_conflict_policy_joins_once_and_records_each_disagreement(workers, sink_path):
    """collect, merge, highest_score, majority_vote and custom, each under error, prefer_first,
    prefer_last and vote (majority_vote + vote is refused at publish): twenty runs at once."""
    with pytest.raises(DefinitionError, match="a majority vote that ties cannot be settled by another vote"):
        fan_out("rd_majority_vote_vote", reducer_branches(OUTPUTS["majority_vote"]),
                reducer=reducer_spec("majority_vote", "vote"))
    for strategy, policy in EXPECTED:
        fan_out(f"rd_{strategy}_{policy}", reducer_branches(OUTPUTS[strategy]), reducer=reducer_spec(strategy, policy))
    clear = {"a": {"label": "x"}, "b": {"label": "y"}, "c": {"label": "x"}}  # a clear majority: nothing to settle
    fan_out("rd_majority_clear", reducer_branches(clear), reducer=reducer_spec("majority_vote", "error"))
    start_pool(workers)

    started = {combo: start_run(f"rd_{combo[0]}_{combo[1]}")[0] for combo in EXPECTED}
    clear_run = start_run("rd_majority_clear")[0]
    runs = settle(started)

    for (strategy, policy), run in runs.items():
        combo = f"{strategy}/{policy}"
        value, conflict = EXPECTED[(strategy, policy)]
        assert_quiet(run, combo)
        for name in OUTPUTS[strategy]:  # every branch ran exactly once, on a worker
            (out,) = run.attempts.filter(state_name=f"{name}_out")
            assert out.status == AttemptStatus.SUCCEEDED and out.worker, combo
        assert sink.requests(f"exec-{run.pk}-a_out", sink_path) == 1, combo
        recorded = events(run, EventKind.AGGREGATION_CONFLICT)
        if conflict is None:
            assert recorded == [], combo
        else:
            (event,) = recorded
            key, values, chosen = conflict
            assert (event.data["key"], event.data["values"], event.data["policy"]) == (key, values, policy), combo
            assert event.data["chosen"] == chosen, combo
        if value is None:  # the error policy: the join fails, nothing after it runs
            assert run.status == RunStatus.FAILED, combo
            assert run.failure_mode == FailureMode.CONFLICTING_AGGREGATION, combo
            assert run.error["type"] == "AggregationConflict", combo
            assert count(run, EventKind.JOINED) == 0 and count(run, EventKind.JOIN_FAILED) == 1, combo
            assert not run.attempts.filter(state_name="after").exists(), combo
            assert Fork.objects.get(run=run).status == ForkStatus.FAILED, combo
        else:
            assert run.status == RunStatus.SUCCEEDED, (combo, run.error)
            assert run.context["fan"] == value and run.output == {"received": {"fan": value}}, combo
            (joined,) = events(run, EventKind.JOINED)
            assert joined.data["branches"] == sorted(OUTPUTS[strategy]), combo
            assert joined.data["conflicts"] == (0 if conflict is None else 1), combo

    clear_run = finished(clear_run)
    assert clear_run.status == RunStatus.SUCCEEDED and clear_run.context["fan"] == "x"
    assert count(clear_run, EventKind.AGGREGATION_CONFLICT) == 0
