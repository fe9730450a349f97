from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripline.devstack.fakes import FakeClock
from tripline.gateway.concurrency import (
    DEFAULT_LIMIT_CONFIG,
    FASTEST_DECREASE,
    SLOWEST_DECREASE,
    AdaptiveLimit,
    LimitConfig,
)
from tripline.gateway.shedding import Rank

CONFIG = LimitConfig(
    target_s=0.05,
    interval_s=0.1,
    min_samples=10,
    initial_limit=100.0,
    min_limit=5.0,
    max_limit=1000.0,
    baseline_window_s=60.0,
    low_share=0.5,
    in_trip_share=1.25,
)
FAST = 0.01  # a route's no-load latency in these tests
ROUTE = "/api/users/{user_id}"


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def __call__(self, old: float, new: float) -> None:
        self.seen.append((old, new))


def make(config: LimitConfig = CONFIG) -> tuple[AdaptiveLimit, FakeClock, Changes]:
    clock = FakeClock(100.0)
    changes = Changes()
    return AdaptiveLimit(config, clock=clock, on_limit_change=changes), clock, changes


def answer(limit: AdaptiveLimit, clock: FakeClock, latency_s: float, route: str = ROUTE) -> None:
    """One request of ``latency_s`` from admission to answer (admitted as CRITICAL, so the
    limit never refuses it)."""
    started = limit.try_acquire(Rank.CRITICAL)
    assert started is not None
    clock.advance(latency_s)
    limit.complete(route, started)


def interval(
    limit: AdaptiveLimit, clock: FakeClock, latency_s: float, *, route: str = ROUTE, held: int = 0
) -> None:
    """One decision interval of ``min_samples`` answers of ``latency_s``, with ``held`` other
    requests in flight meanwhile (the load that makes the limit count as used). The answers
    are spaced so that the last one decides, the very first interval (which starts at its
    first answer) included."""
    tickets = [limit.try_acquire(Rank.CRITICAL) for _ in range(held)]
    per_answer = CONFIG.interval_s / (CONFIG.min_samples - 1) * 1.001
    for _ in range(CONFIG.min_samples):
        started = limit.try_acquire(Rank.CRITICAL)
        assert started is not None
        clock.advance(max(latency_s, per_answer))
        limit.complete(route, clock.now - latency_s)
    for _ in tickets:
        limit.abandon()


def pressing(limit: AdaptiveLimit) -> int:
    """Requests to hold in flight for the limit to count as pressed (LOW's threshold)."""
    return math.ceil(CONFIG.low_share * limit.limit)


def fill(limit: AdaptiveLimit, count: int) -> None:
    for _ in range(count):
        assert limit.try_acquire(Rank.CRITICAL) is not None


def test_the_default_config_is_the_documented_one() -> None:
    assert LimitConfig() == DEFAULT_LIMIT_CONFIG == CONFIG


@pytest.mark.parametrize(
    "bad",
    [
        {"target_s": 0},
        {"interval_s": math.nan},
        {"baseline_window_s": -1},
        {"min_samples": 0},
        {"min_limit": 0},
        {"min_limit": 10, "initial_limit": 5},
        {"initial_limit": 2000},
        {"max_limit": math.inf},
        {"low_share": 0},
        {"low_share": 1.5},
        {"in_trip_share": 0.9},
    ],
)
def test_contradictory_parameters_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        LimitConfig(**bad)


def test_each_rank_is_refused_at_its_share_of_the_limit() -> None:
    limit, _, _ = make()
    assert limit.limit == 100.0
    admitted: dict[int, set[Rank]] = {}
    for in_flight in (0, 49, 50, 99, 100, 124, 125, 500):
        while limit.in_flight < in_flight:
            fill(limit, 1)
        admitted[in_flight] = {rank for rank in Rank if limit.admits(rank)}
    everyone = set(Rank)
    assert admitted[0] == admitted[49] == everyone
    assert admitted[50] == admitted[99] == everyone - {Rank.LOW}
    assert admitted[100] == admitted[124] == {Rank.IN_TRIP, Rank.CRITICAL}
    assert admitted[125] == admitted[500] == {Rank.CRITICAL}


def test_a_refused_request_is_not_counted() -> None:
    limit, _, _ = make()
    fill(limit, 100)
    assert limit.try_acquire(Rank.BROWSING) is None
    assert limit.in_flight == 100
    assert limit.try_acquire(Rank.IN_TRIP) is not None
    assert limit.in_flight == 101


def test_replicas_whose_breaker_is_open_scale_every_threshold() -> None:
    limit, _, _ = make()
    fill(limit, 50)
    assert limit.admits(Rank.BROWSING, available=1.0)
    assert not limit.admits(Rank.BROWSING, available=0.5)
    assert limit.admits(Rank.IN_TRIP, available=0.5)
    assert not limit.admits(Rank.LOW, available=0.5)
    assert {rank for rank in Rank if limit.admits(rank, available=0.0)} == {Rank.CRITICAL}
    with pytest.raises(ValueError, match="available"):
        limit.admits(Rank.LOW, available=1.5)


def test_ending_a_request_that_was_never_admitted_is_an_error() -> None:
    limit, clock, _ = make()
    with pytest.raises(RuntimeError):
        limit.abandon()
    with pytest.raises(RuntimeError):
        limit.complete(ROUTE, clock.now)


def test_a_standing_queue_cuts_the_limit_by_the_gradient_down_to_the_minimum() -> None:
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    assert changes.seen == []
    # Median queueing delay 0.2 s, four times the target: each decision halves the limit.
    for _ in range(8):
        interval(limit, clock, FAST + 0.2, held=pressing(limit))
    assert [new / old for old, new in changes.seen[:4]] == pytest.approx([FASTEST_DECREASE] * 4)
    assert limit.limit == CONFIG.min_limit
    assert limit.queue_delay_s == pytest.approx(0.2)


def test_a_delay_just_over_the_target_cuts_at_least_ten_percent() -> None:
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    interval(limit, clock, FAST + CONFIG.target_s * 1.01, held=50)
    assert len(changes.seen) == 1
    assert changes.seen[0] == pytest.approx((100.0, 100.0 * SLOWEST_DECREASE))


def test_a_few_slow_answers_in_an_interval_do_not_cut_the_limit() -> None:
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    fill(limit, 50)
    for _ in range(5):
        for latency in [FAST] * 6 + [2.0] * 4:
            answer(limit, clock, latency)
        clock.advance(CONFIG.interval_s)
    assert changes.seen != []
    assert all(new > old for old, new in changes.seen)


def test_a_limit_nobody_presses_holds_however_slow_the_answers() -> None:
    """A machine starved by other work, or a slow dependency under light traffic: shrinking
    the limit would shed requests without making anything faster."""
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    # Within the baseline window: after it, 0.5 s would be the route's new no-load time.
    for _ in range(5):
        interval(limit, clock, FAST + 0.5, held=pressing(limit) - 2)
    assert changes.seen == []
    interval(limit, clock, FAST + 0.5, held=pressing(limit))
    assert changes.seen == [(100.0, 100.0 * FASTEST_DECREASE)]


def test_no_decision_before_min_samples_however_long_the_interval() -> None:
    limit, clock, changes = make()
    fill(limit, 50)
    answer(limit, clock, FAST)
    for _ in range(CONFIG.min_samples - 2):
        clock.advance(10.0)
        answer(limit, clock, FAST + 1.0)
    assert changes.seen == []
    answer(limit, clock, FAST + 1.0)
    assert changes.seen == [(100.0, 50.0)]


def test_routes_are_measured_against_their_own_baseline() -> None:
    """A route whose answers always take 0.5 s is not a queue next to one taking 0.01 s."""
    limit, clock, changes = make()
    for _ in range(20):
        interval(limit, clock, FAST, route="/api/users/{user_id}", held=pressing(limit))
        interval(limit, clock, 0.5, route="/api/trips/{trip_id}/payment", held=pressing(limit))
    assert changes.seen != []
    assert all(new > old for old, new in changes.seen)


def test_the_limit_grows_only_while_it_is_used() -> None:
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    for _ in range(10):
        interval(limit, clock, FAST, held=10)
    assert changes.seen == [], "an upstream used at a tenth of its limit keeps it"
    interval(limit, clock, FAST, held=60)
    assert changes.seen == [(100.0, 110.0)]


def test_the_limit_recovers_once_the_queue_drains() -> None:
    limit, clock, _ = make()
    interval(limit, clock, FAST)
    for _ in range(10):
        interval(limit, clock, FAST + 0.2, held=pressing(limit))
    assert limit.limit == CONFIG.min_limit
    for _ in range(30):
        interval(limit, clock, FAST, held=pressing(limit))
    assert limit.limit > CONFIG.initial_limit


def test_a_route_that_became_slower_for_good_is_learnt_again_within_the_window() -> None:
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    while clock.now < 100.0 + CONFIG.baseline_window_s:
        interval(limit, clock, FAST + 0.2, held=pressing(limit))
    cut = len(changes.seen)
    assert limit.limit == CONFIG.min_limit
    for _ in range(30):
        interval(limit, clock, FAST + 0.2, held=pressing(limit))
    assert all(new > old for old, new in changes.seen[cut:])
    assert limit.limit > CONFIG.min_limit


def test_a_silence_longer_than_the_window_forgets_every_baseline() -> None:
    limit, clock, changes = make()
    interval(limit, clock, FAST)
    clock.advance(2 * CONFIG.baseline_window_s)
    for _ in range(5):
        interval(limit, clock, FAST + 0.2, held=pressing(limit))
    assert changes.seen != []
    assert all(new > old for old, new in changes.seen)


# Operations: acquire at a rank, complete the oldest with a latency, abandon the oldest, or let
# time pass.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.sampled_from(list(Rank)), st.sampled_from([1.0, 0.5])),
        st.tuples(st.just("complete"), st.floats(0, 3), st.sampled_from(["/a", "/b"])),
        st.tuples(st.just("abandon")),
        st.tuples(st.just("wait"), st.floats(0, 40)),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_invariants_hold_whatever_happens(ops: list[tuple[Any, ...]]) -> None:
    limit, clock, changes = make()
    started: list[float] = []
    for op in ops:
        if op[0] == "acquire":
            _, rank, available = op
            admitted = {r for r in Rank if limit.admits(r, available=available)}
            # Ranks are ordered: whatever a rank passes, every higher rank passes too.
            assert all(higher in admitted for r in admitted for higher in Rank if higher > r)
            assert Rank.CRITICAL in admitted
            before = limit.in_flight
            ticket = limit.try_acquire(rank, available=available)
            assert (ticket is not None) is (rank in admitted)
            assert limit.in_flight == before + (ticket is not None)
            if ticket is not None:
                started.append(ticket)
        elif op[0] == "complete" and started:
            clock.advance(op[1])
            limit.complete(op[2], started.pop(0))
        elif op[0] == "abandon" and started:
            started.pop(0)
            limit.abandon()
        elif op[0] == "wait":
            clock.advance(op[1])
        assert limit.in_flight == len(started)
        assert CONFIG.min_limit <= limit.limit <= CONFIG.max_limit
    for old, new in changes.seen:
        if new < old:
            # A cut is by the gradient's bounds, unless the minimum stopped it.
            assert new == CONFIG.min_limit or (
                FASTEST_DECREASE * old - 1e-9 <= new <= SLOWEST_DECREASE * old + 1e-9
            )
        else:
            assert new == pytest.approx(min(CONFIG.max_limit, old + math.sqrt(old)))


def test_the_snapshot_reports_the_state() -> None:
    limit, _, _ = make()
    fill(limit, 3)
    assert limit.snapshot() == {"limit": 100.0, "in_flight": 3.0, "queue_delay_s": 0.0}
