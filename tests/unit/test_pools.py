"""Pools of workers per queue (bulkheads) as run_workers and run_stack read them."""

from __future__ import annotations

import pytest

from orchestrator.processes import parse_pools


def test_each_spec_is_a_pool_of_queues_and_a_count():
    assert parse_pools(["default=4", "slow=1", "partner,mail=2"]) == [
        (["default"], 4), (["slow"], 1), (["partner", "mail"], 2)]


@pytest.mark.parametrize(("spec", "says"), [
    (["default"], "write QUEUE=N"), (["default=0"], "at least 1"), (["=2"], "write QUEUE=N"),
    (["default=two"], "write QUEUE=N"), (["default=1", "default,slow=1"], "queue 'default' is in more than one pool"),
])
def test_bad_pools_say_what_to_write(spec, says):
    with pytest.raises(ValueError, match=says):
        parse_pools(spec)
