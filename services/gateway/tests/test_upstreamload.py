from __future__ import annotations

import pytest

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.devstack.fakes import FakeClock
from tripline.gateway.concurrency import AdaptiveLimit, LimitConfig
from tripline.gateway.shedding import Rank
from tripline.gateway.upstreamload import Slot, UpstreamGuard

CONFIG = LimitConfig(initial_limit=10.0, min_limit=1.0)
ROUTE = "/api/users/{user_id}"


def make(replicas: int = 2) -> tuple[UpstreamGuard, list[CircuitBreaker], FakeClock]:
    clock = FakeClock(50.0)
    breakers = [
        CircuitBreaker(f"r{i}", failure_threshold=1, reset_timeout_s=3.0, clock=clock)
        for i in range(replicas)
    ]
    guard = UpstreamGuard("core", AdaptiveLimit(CONFIG, clock=clock), breakers)
    return guard, breakers, clock


def trip(breaker: CircuitBreaker) -> None:
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_an_upstream_needs_a_replica() -> None:
    with pytest.raises(ValueError, match="replica"):
        UpstreamGuard("core", AdaptiveLimit(CONFIG), [])


def test_requests_in_flight_are_counted_until_they_end() -> None:
    guard, _, clock = make()
    slot = guard.enter(ROUTE, Rank.BROWSING)
    assert isinstance(slot, Slot)
    assert guard.limit.in_flight == 1
    clock.advance(0.01)
    slot.done()
    assert guard.limit.in_flight == 0
    other = guard.enter(ROUTE, Rank.LOW)
    assert isinstance(other, Slot)
    other.abandon()
    assert guard.limit.in_flight == 0
    with pytest.raises(RuntimeError, match="already ended"):
        other.done()
    assert guard.limit.in_flight == 0


def test_the_limit_refuses_by_rank_and_never_critical() -> None:
    guard, _, _ = make()
    slots = [guard.enter(ROUTE, Rank.BROWSING) for _ in range(10)]
    assert all(isinstance(slot, Slot) for slot in slots)
    assert guard.refusal(Rank.LOW) == guard.refusal(Rank.BROWSING) == "limit"
    assert guard.enter(ROUTE, Rank.BROWSING) == "limit"
    assert guard.refusal(Rank.IN_TRIP) is None
    assert guard.refusal(Rank.CRITICAL) is None
    assert isinstance(guard.enter(ROUTE, Rank.CRITICAL), Slot)


def test_an_open_breaker_on_one_replica_of_two_halves_the_thresholds() -> None:
    guard, breakers, _ = make()
    for _ in range(5):
        assert isinstance(guard.enter(ROUTE, Rank.BROWSING), Slot)
    assert guard.available() == 1.0
    assert guard.refusal(Rank.BROWSING) is None
    trip(breakers[0])
    assert guard.available() == 0.5
    assert guard.refusal(Rank.BROWSING) == "limit"
    assert guard.refusal(Rank.IN_TRIP) is None


def test_every_breaker_open_sheds_all_but_critical_at_once_until_one_may_probe() -> None:
    guard, breakers, clock = make()
    for breaker in breakers:
        trip(breaker)
    assert guard.available() == 0.0
    for rank in (Rank.LOW, Rank.BROWSING, Rank.IN_TRIP):
        assert guard.refusal(rank) == "breaker"
        assert guard.enter(ROUTE, rank) == "breaker"
    assert guard.limit.in_flight == 0
    assert guard.retry_after_s() == pytest.approx(3.0)
    assert isinstance(guard.enter(ROUTE, Rank.CRITICAL), Slot)
    clock.advance(1.0)
    assert guard.retry_after_s() == pytest.approx(2.0)
    clock.advance(2.0)
    # The look itself moves the breakers on to half-open, so a probe can pass.
    assert guard.refusal(Rank.BROWSING) is None
    assert {breaker.state for breaker in breakers} == {BreakerState.HALF_OPEN}
