"""Retry policy: which errors a rule matches, how long to wait, and when to give up."""

from __future__ import annotations

import random
from typing import Any

import pytest

from orchestrator.engine.errors import RatchetError, StepTimeout, error_payload
from orchestrator.engine.retry import RetryRule, error_matches, next_retry_delay

pytestmark = pytest.mark.engine


class TransientInventoryError(ConnectionError):
    """A user error type whose base classes the error payload should carry."""


@pytest.fixture
def inventory_error() -> dict[str, Any]:
    return error_payload(TransientInventoryError("stock service busy"))


@pytest.fixture
def rule():
    """A RetryRule factory: the defaults, overridden by keyword."""

    def make(**overrides: Any) -> RetryRule:
        return RetryRule(**overrides)

    return make


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


# --- error_matches -----------------------------------------------------------------------------


def test_error_payload_lists_the_exception_type_and_its_bases(inventory_error):
    assert inventory_error["type"] == "TransientInventoryError"
    assert inventory_error["types"] == ["TransientInventoryError", "ConnectionError", "OSError", "Exception"]
    assert inventory_error["message"] == "stock service busy"


def test_a_star_matches_every_error(inventory_error):
    assert error_matches(["*"], inventory_error)
    assert error_matches(["*"], {"type": "Anything"})
    assert error_matches(["Nope", "*"], {})


def test_an_error_matches_its_own_type_name(inventory_error):
    assert error_matches(["TransientInventoryError"], inventory_error)


@pytest.mark.parametrize("base", ["ConnectionError", "OSError", "Exception"])
def test_an_error_matches_the_names_of_its_base_classes(inventory_error, base):
    assert error_matches([base], inventory_error)


def test_engine_errors_match_ratchet_error():
    payload = error_payload(StepTimeout("took too long"))
    assert error_matches(["RatchetError"], payload)
    assert error_matches(["StepTimeout"], payload)
    assert payload["code"] == StepTimeout.code
    assert RatchetError.__name__ in payload["types"]


@pytest.mark.parametrize("patterns", [["ValueError"], ["TimeoutError", "KeyError"], ["transientinventoryerror"],
                                      ["BaseException"], ["object"]])
def test_an_error_does_not_match_unrelated_names(inventory_error, patterns):
    assert not error_matches(patterns, inventory_error)


def test_an_error_without_types_matches_on_its_type():
    assert error_matches(["Timeout"], {"type": "Timeout", "message": "late"})
    assert not error_matches(["Other"], {"type": "Timeout"})


def test_a_named_error_payload_matches_only_that_name():
    payload = error_payload(ValueError("bad"), name="InvalidOrder")
    assert payload["types"] == ["InvalidOrder"]
    assert error_matches(["InvalidOrder"], payload)
    assert not error_matches(["ValueError"], payload)


# --- RetryRule ---------------------------------------------------------------------------------


def test_rule_defaults_from_an_empty_dict():
    assert RetryRule.from_dict({}) == RetryRule(
        errors=("*",), max_attempts=3, interval_seconds=1.0, backoff_rate=2.0, max_interval_seconds=300.0, jitter=True
    )


def test_rule_from_dict_reads_every_field():
    parsed = RetryRule.from_dict({"errors": ["A", "B"], "max_attempts": 5, "interval_seconds": 0.2,
                                  "backoff_rate": 3, "max_interval_seconds": 10, "jitter": False})
    assert parsed == RetryRule(errors=("A", "B"), max_attempts=5, interval_seconds=0.2, backoff_rate=3.0,
                               max_interval_seconds=10.0, jitter=False)


def test_without_jitter_the_delay_grows_by_the_backoff_rate(rule):
    steady = rule(interval_seconds=0.5, backoff_rate=3, jitter=False)
    assert [steady.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_a_backoff_rate_of_one_keeps_the_delay_constant(rule):
    constant = rule(interval_seconds=2, backoff_rate=1, jitter=False)
    assert {constant.delay(n) for n in range(1, 20)} == {2}


def test_the_first_retry_waits_the_interval_even_for_attempt_zero(rule):
    first = rule(interval_seconds=1.5, jitter=False)
    assert first.delay(1) == 1.5
    assert first.delay(0) == 1.5


def test_the_delay_is_capped_at_max_interval_seconds(rule):
    capped = rule(interval_seconds=1, backoff_rate=2, max_interval_seconds=10, jitter=False)
    assert [capped.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]


def test_a_huge_backoff_stays_at_the_cap_instead_of_overflowing(rule):
    steep = rule(interval_seconds=1, backoff_rate=1e10, max_interval_seconds=60, max_attempts=100, jitter=False)
    assert steep.delay(99) == 60
    assert rule(interval_seconds=0, backoff_rate=1e10, jitter=False).delay(99) == 0


def test_a_zero_interval_never_waits(rule, rng):
    assert rule(interval_seconds=0).delay(5, rng) == 0


@pytest.mark.parametrize("failed_attempts", [1, 2, 3, 4, 8, 12])
def test_equal_jitter_keeps_the_delay_between_half_and_all_of_the_backoff(rule, rng, failed_attempts):
    jittered = rule(interval_seconds=1, backoff_rate=2, max_interval_seconds=100)
    plain = rule(interval_seconds=1, backoff_rate=2, max_interval_seconds=100, jitter=False)
    full = plain.delay(failed_attempts)
    delays = [jittered.delay(failed_attempts, rng) for _ in range(500)]
    assert all(full / 2 <= d <= full for d in delays)
    assert len(set(delays)) > 400, "jitter should spread retries out"
    assert min(delays) < full * 0.6 and max(delays) > full * 0.9


def test_jitter_is_reproducible_with_a_seeded_random(rule):
    jittered = rule(interval_seconds=4)
    first = [jittered.delay(n, random.Random(7)) for n in range(1, 5)]
    second = [jittered.delay(n, random.Random(7)) for n in range(1, 5)]
    assert first == second


def test_jitter_uses_the_random_half_on_top_of_the_fixed_half(rule):
    jittered = rule(interval_seconds=8, backoff_rate=2)
    expected = 8 / 2 + random.Random(99).uniform(0, 8 / 2)
    assert jittered.delay(1, random.Random(99)) == expected


# --- next_retry_delay --------------------------------------------------------------------------


def test_next_retry_delay_retries_until_max_attempts_is_used_up(rule, inventory_error):
    rules = (rule(max_attempts=3, interval_seconds=1, backoff_rate=2, jitter=False),)
    assert next_retry_delay(rules, inventory_error, 1) == 1
    assert next_retry_delay(rules, inventory_error, 2) == 2
    assert next_retry_delay(rules, inventory_error, 3) is None
    assert next_retry_delay(rules, inventory_error, 4) is None


def test_max_attempts_of_one_means_no_retry(rule, inventory_error):
    assert next_retry_delay((rule(max_attempts=1),), inventory_error, 1) is None


def test_next_retry_delay_is_none_when_no_rule_matches(rule, inventory_error):
    rules = (rule(errors=("ValueError",)), rule(errors=("KeyError", "TimeoutError")))
    assert next_retry_delay(rules, inventory_error, 1) is None


def test_next_retry_delay_is_none_without_rules(inventory_error):
    assert next_retry_delay((), inventory_error, 1) is None


def test_the_first_matching_rule_decides(rule, inventory_error):
    rules = (
        rule(errors=("ValueError",), interval_seconds=100, jitter=False),
        rule(errors=("ConnectionError",), interval_seconds=3, max_attempts=5, jitter=False),
        rule(errors=("*",), interval_seconds=50, max_attempts=10, jitter=False),
    )
    assert next_retry_delay(rules, inventory_error, 1) == 3
    assert next_retry_delay(rules, {"type": "ValueError", "types": ["ValueError"]}, 1) == 100
    assert next_retry_delay(rules, {"type": "KeyError", "types": ["KeyError"]}, 1) == 50


def test_a_used_up_first_match_does_not_fall_through_to_later_rules(rule, inventory_error):
    rules = (
        rule(errors=("TransientInventoryError",), max_attempts=2, jitter=False),
        rule(errors=("*",), max_attempts=10, jitter=False),
    )
    assert next_retry_delay(rules, inventory_error, 1) is not None
    assert next_retry_delay(rules, inventory_error, 2) is None


def test_next_retry_delay_applies_jitter_within_bounds(rule, inventory_error):
    rules = (rule(interval_seconds=2, backoff_rate=2, max_attempts=10),)
    for failures in range(1, 6):
        full = 2 * 2 ** (failures - 1)
        delay = next_retry_delay(rules, inventory_error, failures)
        assert full / 2 <= delay <= full
