from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.devstack.fakes import FakeClock
from tripline.gateway.shedding import (
    DEFAULT_CONFIG,
    MAX_LEVEL,
    LoadShedder,
    Priority,
    Rank,
    SheddingConfig,
    rank_of,
)

CONFIG = SheddingConfig(target_s=0.025, interval_s=0.5, sample_interval_s=0.02, max_retry_after_s=5)
INTERVAL = CONFIG.interval_s
SAMPLE = CONFIG.sample_interval_s
HIGH = 0.1  # well above target
LOW_LAG = 0.001  # well below target


class Recorder:
    """Level changes as (time, old, new)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.changes: list[tuple[float, int, int]] = []

    def __call__(self, old: int, new: int) -> None:
        self.changes.append((self.clock.now, old, new))


def make(config: SheddingConfig = CONFIG, **kwargs: Any) -> tuple[LoadShedder, FakeClock, Recorder]:
    clock = FakeClock(100.0)
    changes = Recorder(clock)
    shedder = LoadShedder(config, clock=clock, on_level_change=changes, **kwargs)
    return shedder, clock, changes


def feed(shedder: LoadShedder, clock: FakeClock, lag_s: float, seconds: float) -> list[int]:
    """One sample every SAMPLE for ``seconds``; the level after each."""
    levels = []
    for _ in range(round(seconds / SAMPLE)):
        clock.advance(SAMPLE)
        shedder.observe(lag_s)
        levels.append(shedder.level)
    return levels


def shedder_at(level: int) -> LoadShedder:
    shedder, clock, _ = make()
    shedder.observe(LOW_LAG)
    while shedder.level < level:
        feed(shedder, clock, HIGH, SAMPLE)
    return shedder


def test_the_default_config_is_the_documented_one() -> None:
    assert SheddingConfig() == DEFAULT_CONFIG == CONFIG


def test_starts_admitting_everything() -> None:
    shedder, _, _ = make()
    assert shedder.level == 0
    assert all(shedder.admit(priority) for priority in Priority)
    assert shedder.snapshot() == {"level": 0, "min_lag_s": 0.0}


def test_sustained_lag_raises_the_level_one_step_per_interval() -> None:
    shedder, clock, changes = make()
    shedder.observe(HIGH)
    assert set(feed(shedder, clock, HIGH, INTERVAL - SAMPLE)) == {0}
    feed(shedder, clock, HIGH, 2 * SAMPLE)
    assert shedder.level == 1
    assert set(feed(shedder, clock, HIGH, INTERVAL - 2 * SAMPLE)) == {1}
    feed(shedder, clock, HIGH, 3 * SAMPLE)
    assert shedder.level == 2
    feed(shedder, clock, HIGH, 3 * INTERVAL)
    assert shedder.level == MAX_LEVEL == 2
    assert [(old, new) for _, old, new in changes.changes] == [(0, 1), (1, 2)]


def test_a_single_spike_shorter_than_an_interval_does_not_shed() -> None:
    shedder, clock, changes = make()
    shedder.observe(LOW_LAG)
    for _ in range(6):
        feed(shedder, clock, LOW_LAG, INTERVAL / 2)
        # The spike is a stall: the late sample arrives after the stall, carrying it as lag.
        stall = 0.4
        clock.advance(stall)
        shedder.observe(stall)
    feed(shedder, clock, LOW_LAG, 2 * INTERVAL)
    assert changes.changes == []


def test_lag_that_drains_within_the_interval_does_not_shed() -> None:
    shedder, clock, changes = make()
    shedder.observe(LOW_LAG)
    for _ in range(10):
        feed(shedder, clock, HIGH, INTERVAL - 3 * SAMPLE)
        feed(shedder, clock, LOW_LAG, SAMPLE)
    assert changes.changes == []


def test_recovery_is_one_step_per_interval() -> None:
    shedder, clock, changes = make()
    shedder.observe(HIGH)
    feed(shedder, clock, HIGH, 2 * INTERVAL + 3 * SAMPLE)
    assert shedder.level == 2
    levels = feed(shedder, clock, LOW_LAG, 3 * INTERVAL)
    assert levels[0] == 2
    assert levels[-1] == 0
    assert [(old, new) for _, old, new in changes.changes] == [(0, 1), (1, 2), (2, 1), (1, 0)]
    (up_1, _, _), (up_2, _, _), (down_1, _, _), (down_2, _, _) = changes.changes
    assert up_2 - up_1 >= INTERVAL
    assert down_1 - up_2 >= INTERVAL
    assert down_2 - down_1 >= INTERVAL


def test_lag_equal_to_target_holds_the_level() -> None:
    shedder, clock, _ = make()
    shedder.observe(HIGH)
    feed(shedder, clock, HIGH, INTERVAL + SAMPLE)
    assert shedder.level == 1
    assert set(feed(shedder, clock, CONFIG.target_s, 4 * INTERVAL)) == {1}


def test_one_late_sample_after_silence_raises_the_level() -> None:
    shedder, clock, changes = make()
    shedder.observe(LOW_LAG)
    feed(shedder, clock, LOW_LAG, INTERVAL / 2)
    stall = 3 * INTERVAL
    clock.advance(stall)
    shedder.observe(stall)
    assert shedder.level == 1
    assert changes.changes == [(clock.now, 0, 1)]
    assert shedder.snapshot() == {"level": 1, "min_lag_s": stall}


def test_the_first_interval_starts_at_the_first_sample() -> None:
    shedder, clock, _ = make()
    clock.advance(10 * INTERVAL)
    shedder.observe(HIGH)
    assert shedder.level == 0
    feed(shedder, clock, HIGH, INTERVAL + SAMPLE)
    assert shedder.level == 1


def test_snapshot_reports_the_minimum_lag_of_the_last_interval() -> None:
    shedder, clock, _ = make()
    for lag in (0.05, 0.03, 0.04):
        clock.advance(SAMPLE)
        shedder.observe(lag)
    assert shedder.snapshot() == {"level": 0, "min_lag_s": 0.03}
    clock.advance(INTERVAL + SAMPLE)
    shedder.observe(0.07)
    assert shedder.snapshot() == {"level": 1, "min_lag_s": 0.07}


@pytest.mark.parametrize(
    ("level", "admitted"),
    [
        (0, {Priority.CRITICAL, Priority.NORMAL, Priority.LOW}),
        (1, {Priority.CRITICAL, Priority.NORMAL}),
        (2, {Priority.CRITICAL}),
    ],
)
def test_admission_by_level(level: int, admitted: set[Priority]) -> None:
    shedder = shedder_at(level)
    assert shedder.level == level
    assert {priority for priority in Priority if shedder.admit(priority)} == admitted


@pytest.mark.parametrize(
    ("level", "admitted"),
    [
        (0, set(Rank)),
        (1, {Rank.CRITICAL, Rank.IN_TRIP, Rank.BROWSING}),
        (2, {Rank.CRITICAL, Rank.IN_TRIP}),
    ],
)
def test_admission_by_rank_while_the_lag_is_under_the_in_trip_bar(
    level: int, admitted: set[Rank]
) -> None:
    shedder, clock, _ = make()
    under_bar = 2 * CONFIG.target_s
    shedder.observe(under_bar)
    while shedder.level < level:
        feed(shedder, clock, under_bar, SAMPLE)
    assert {rank for rank in Rank if shedder.admit_rank(rank)} == admitted


def test_trip_parties_are_refused_at_the_top_level_from_the_bar_on() -> None:
    shedder = shedder_at(MAX_LEVEL)
    assert CONFIG.in_trip_lag_factor * CONFIG.target_s == HIGH
    assert {rank for rank in Rank if shedder.admit_rank(rank)} == {Rank.CRITICAL}


def test_trip_parties_are_refused_at_the_top_level_once_the_standing_lag_passes_the_bar() -> None:
    shedder, clock, _ = make()
    bar = CONFIG.in_trip_lag_factor * CONFIG.target_s
    shedder.observe(bar * 2)
    feed(shedder, clock, bar * 2, 2 * INTERVAL + 3 * SAMPLE)
    assert shedder.level == 2
    assert not shedder.admit_rank(Rank.IN_TRIP)
    assert shedder.admit_rank(Rank.CRITICAL)
    # One quick wake-up within the interval: the loop is not standing that late any more.
    feed(shedder, clock, bar / 2, SAMPLE)
    assert shedder.level == 2
    assert shedder.admit_rank(Rank.IN_TRIP)
    assert not shedder.admit_rank(Rank.BROWSING)


def test_ranks_follow_priority_and_trip_state() -> None:
    assert [rank_of(Priority.LOW, in_trip=t) for t in (False, True)] == [Rank.LOW] * 2
    assert rank_of(Priority.NORMAL) is Rank.BROWSING
    assert rank_of(Priority.NORMAL, in_trip=True) is Rank.IN_TRIP
    assert [rank_of(Priority.CRITICAL, in_trip=t) for t in (False, True)] == [Rank.CRITICAL] * 2
    assert sorted(Rank) == [Rank.LOW, Rank.BROWSING, Rank.IN_TRIP, Rank.CRITICAL]
    assert [rank.label for rank in Rank] == ["low", "browsing", "in_trip", "critical"]


def test_priorities_are_the_contract_strings() -> None:
    assert [str(priority) for priority in Priority] == ["critical", "normal", "low"]


def test_retry_after_is_whole_seconds_between_1_and_the_maximum() -> None:
    shedder, _, _ = make(rng=random.Random(1234))
    draws = [shedder.retry_after_s() for _ in range(500)]
    assert all(type(draw) is int for draw in draws)
    assert set(draws) == {1, 2, 3, 4, 5}


def test_retry_after_is_reproducible_with_a_seeded_rng() -> None:
    first, _, _ = make(rng=random.Random(7))
    second, _, _ = make(rng=random.Random(7))
    assert [first.retry_after_s() for _ in range(20)] == [second.retry_after_s() for _ in range(20)]


def test_retry_after_with_a_maximum_of_one_is_one() -> None:
    shedder, _, _ = make(SheddingConfig(max_retry_after_s=1), rng=random.Random(0))
    assert {shedder.retry_after_s() for _ in range(50)} == {1}


@pytest.mark.parametrize(
    "overrides",
    [
        {"target_s": 0.0},
        {"target_s": -0.01},
        {"target_s": math.nan},
        {"target_s": math.inf},
        {"interval_s": 0.0},
        {"interval_s": math.inf},
        {"sample_interval_s": 0.0},
        {"sample_interval_s": -1.0},
        {"sample_interval_s": 0.3},
        {"interval_s": 0.03},
        {"max_retry_after_s": 0},
        {"max_retry_after_s": -3},
        {"in_trip_lag_factor": 0.5},
        {"in_trip_lag_factor": math.inf},
    ],
)
def test_invalid_config_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        SheddingConfig(**overrides)


def test_an_interval_of_exactly_two_samples_is_valid() -> None:
    assert SheddingConfig(interval_s=0.04, sample_interval_s=0.02).interval_s == 0.04


@pytest.mark.parametrize("lag", [-0.001, math.nan, -math.inf])
def test_observe_refuses_a_lag_that_is_not_a_duration(lag: float) -> None:
    shedder, _, _ = make()
    with pytest.raises(ValueError, match="non-negative"):
        shedder.observe(lag)


# Property tests: any sequence of (time passed, lag) samples.

samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3 * INTERVAL),
        st.one_of(
            st.floats(min_value=0.0, max_value=4 * CONFIG.target_s),
            st.floats(min_value=0.0, max_value=10.0),
            st.just(CONFIG.target_s),
        ),
    ),
    max_size=200,
)


def replay(shedder: LoadShedder, clock: FakeClock, steps: list[tuple[float, float]]) -> None:
    for advance, lag in steps:
        clock.advance(advance)
        shedder.observe(lag)
        assert shedder.admit(Priority.CRITICAL)
        if not shedder.admit(Priority.NORMAL):
            assert not shedder.admit(Priority.LOW)
        assert 0 <= shedder.level <= MAX_LEVEL
        # By rank: the priorities' answers, and a higher rank passes wherever a lower one does.
        assert shedder.admit_rank(Rank.LOW) is shedder.admit(Priority.LOW)
        assert shedder.admit_rank(Rank.BROWSING) is shedder.admit(Priority.NORMAL)
        admitted = [shedder.admit_rank(rank) for rank in Rank]
        assert admitted == sorted(admitted)


@given(samples)
def test_critical_is_always_admitted_and_low_is_refused_before_normal(
    steps: list[tuple[float, float]],
) -> None:
    shedder, clock, _ = make()
    replay(shedder, clock, steps)


@given(samples)
def test_the_level_moves_at_most_one_step_per_interval(steps: list[tuple[float, float]]) -> None:
    shedder, clock, changes = make()
    replay(shedder, clock, steps)
    first_sample_at = FakeClock(100.0).now + (steps[0][0] if steps else 0.0)
    previous_at = first_sample_at
    for at, old, new in changes.changes:
        assert abs(new - old) == 1
        assert at - previous_at >= INTERVAL
        previous_at = at


@given(samples, st.floats(min_value=0.0, max_value=CONFIG.target_s, exclude_max=True))
def test_lag_below_target_brings_the_level_back_to_zero(
    steps: list[tuple[float, float]], calm_lag: float
) -> None:
    shedder, clock, _ = make()
    replay(shedder, clock, steps)
    feed(shedder, clock, calm_lag, (MAX_LEVEL + 1) * INTERVAL)
    assert shedder.level == 0
    assert all(shedder.admit(priority) for priority in Priority)
