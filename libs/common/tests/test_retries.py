from __future__ import annotations

import bisect
import math
import random
import sys
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripline.common.retries import Backoff, RetryBudget
from tripline.devstack.fakes import FakeClock

seconds = st.floats(min_value=1e-300, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(base=seconds, cap=seconds, attempt=st.integers(0, 5000), seed=st.integers(0, 2**32))
def test_backoff_draws_uniformly_below_the_capped_exponential(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    delay = Backoff(base_s=base, cap_s=cap).delay(attempt, random.Random(seed))
    # Exact arithmetic, so the bound does not share the implementation's float shortcuts.
    ceiling = min(Fraction(cap), Fraction(base) * 2**attempt)
    assert 0 <= Fraction(delay) <= ceiling
    assert delay == random.Random(seed).uniform(0.0, float(ceiling))


@pytest.mark.parametrize("attempt", [1024, 10**6, sys.maxsize, 10**100])
def test_backoff_survives_huge_attempts(attempt: int) -> None:
    delays = [Backoff().delay(attempt, random.Random(seed)) for seed in range(100)]
    assert all(0.0 <= delay <= 2.0 for delay in delays)
    assert max(delays) > 1.5


def test_backoff_jitters_over_the_whole_range() -> None:
    rng = random.Random(7)
    first = [Backoff(base_s=0.05, cap_s=2.0).delay(0, rng) for _ in range(1000)]
    capped = [Backoff(base_s=0.05, cap_s=2.0).delay(10, rng) for _ in range(1000)]
    assert min(first) < 0.005
    assert 0.045 < max(first) <= 0.05
    assert min(capped) < 0.2
    assert 1.8 < max(capped) <= 2.0


def test_backoff_grows_until_the_cap() -> None:
    backoff = Backoff(base_s=0.05, cap_s=2.0)
    means = [
        sum(backoff.delay(attempt, random.Random(seed)) for seed in range(2000)) / 2000
        for attempt in range(8)
    ]
    # Full jitter averages half the ceiling: 0.025, 0.05, 0.1, ... until the cap of 2 s.
    expected = [min(2.0, 0.05 * 2**attempt) / 2 for attempt in range(8)]
    assert means == pytest.approx(expected, rel=0.1)


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff()
    assert backoff.delay(3, random.Random(42)) == backoff.delay(3, random.Random(42))


def test_backoff_rejects_a_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1, random.Random(0))


@pytest.mark.parametrize(
    "kwargs", [{"base_s": 0.0}, {"base_s": -0.1}, {"cap_s": 0.0}, {"cap_s": -1.0}]
)
def test_backoff_rejects_invalid_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Backoff(**kwargs)


def spend_all(budget: RetryBudget) -> int:
    allowed = 0
    while budget.try_spend():
        allowed += 1
        assert allowed <= 100_000, "the budget never ran out"
    return allowed


def test_a_burst_of_retries_without_requests_gets_only_the_reserve() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.1, min_per_s=10.0, window_s=10.0, clock=clock)
    assert spend_all(budget) == 100
    clock.advance(5.0)
    assert not budget.try_spend()


def test_spent_retries_are_forgotten_once_their_second_leaves_the_window() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.1, min_per_s=1.0, window_s=10.0, clock=clock)
    assert spend_all(budget) == 10
    clock.advance(10.0)
    assert not budget.try_spend()
    clock.advance(1.0)
    assert spend_all(budget) == 10


def test_steady_traffic_may_retry_ratio_of_its_requests() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.1, min_per_s=0.0, window_s=10.0, clock=clock)
    per_second = []
    for _ in range(30):
        for _ in range(100):
            budget.record_request()
        per_second.append(spend_all(budget))
        clock.advance(1.0)
    assert per_second == [10] * 30


def test_the_reserve_adds_to_the_ratio() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.5, min_per_s=2.0, window_s=5.0, clock=clock)
    for _ in range(40):
        budget.record_request()
    assert spend_all(budget) == 20 + 10


def test_a_zero_budget_never_retries() -> None:
    budget = RetryBudget(ratio=0.0, min_per_s=0.0, clock=FakeClock(0.0))
    for _ in range(1000):
        budget.record_request()
    assert not budget.try_spend()


@pytest.mark.parametrize(
    "kwargs", [{"ratio": -0.1}, {"min_per_s": -1.0}, {"window_s": 0.0}, {"window_s": -5.0}]
)
def test_budget_rejects_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryBudget(**kwargs)


# Steps of the budget property test: advance the clock by so many quarter seconds (exact in
# binary floating point, so window edges are computed without rounding), record so many
# requests, or ask for so many retries.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(1, 12)),
        st.tuples(st.just("requests"), st.integers(1, 20)),
        st.tuples(st.just("retries"), st.integers(1, 20)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
    min_per_s=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    window_s=st.sampled_from([0.5, 1.0, 2.5, 4.0]),
    steps=steps,
)
def test_budget_keeps_its_documented_promise(
    ratio: float, min_per_s: float, window_s: float, steps: list[tuple[str, int]]
) -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=ratio, min_per_s=min_per_s, window_s=window_s, clock=clock)
    reserve = min_per_s * window_s
    lookback = math.ceil(window_s) + 1
    requests: list[float] = []
    retries: list[float] = []

    def count(times: list[float], after: float) -> int:
        """How many of ``times`` (kept in order) are later than ``after``."""
        return len(times) - bisect.bisect_right(times, after)

    for action, amount in steps:
        now = clock.now
        if action == "advance":
            clock.advance(amount / 4)
        elif action == "requests":
            for _ in range(amount):
                budget.record_request()
            requests.extend([now] * amount)
        else:
            for _ in range(amount):
                must_allow = count(retries, now - lookback) + 1 <= (
                    ratio * count(requests, now - window_s) + reserve
                )
                if budget.try_spend():
                    retries.append(now)
                    assert count(retries, now - window_s) <= (
                        ratio * count(requests, now - lookback) + reserve
                    )
                else:
                    assert not must_allow
