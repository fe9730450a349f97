from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tripline.devstack.fakes import FakeClock
from tripline.gateway.activetrips import ActiveTrips, Outcome


class Redis:
    """Stands in for the look-up: who is in a trip, how often each was asked, and whether it
    hangs or fails."""

    def __init__(self, active: set[str]) -> None:
        self.active = active
        self.asked: Counter[str] = Counter()
        self.hang = False
        self.fail = False
        self.release = asyncio.Event()

    async def __call__(self, user_id: str) -> bool:
        self.asked[user_id] += 1
        if self.fail:
            raise ConnectionError("redis is away")
        if self.hang:
            await self.release.wait()
        await asyncio.sleep(0)
        return user_id in self.active


def make(redis: Redis, **kwargs: float) -> tuple[ActiveTrips, FakeClock, list[Outcome]]:
    clock = FakeClock()
    outcomes: list[Outcome] = []
    trips = ActiveTrips(
        redis,
        ttl_s=kwargs.get("ttl_s", 5.0),
        wait_s=kwargs.get("wait_s", 0.01),
        max_entries=int(kwargs.get("max_entries", 100)),
        clock=clock,
        on_lookup=outcomes.append,
    )
    return trips, clock, outcomes


def test_parameters_are_checked() -> None:
    for bad in ({"ttl_s": 0.0}, {"wait_s": float("nan")}, {"max_entries": 0}):
        with pytest.raises(ValueError, match="must be"):
            make(Redis(set()), **bad)


async def test_answers_are_remembered_for_the_ttl_either_way() -> None:
    redis = Redis({"d1"})
    trips, clock, outcomes = make(redis)
    assert await trips.is_active("d1") is True
    assert await trips.is_active("r1") is False
    clock.advance(4.9)
    assert await trips.is_active("d1") is True
    assert await trips.is_active("r1") is False
    assert redis.asked == {"d1": 1, "r1": 1}
    redis.active = {"r1"}
    clock.advance(0.2)
    assert trips.cached("d1") is None
    assert await trips.is_active("d1") is False
    assert await trips.is_active("r1") is True
    assert redis.asked == {"d1": 2, "r1": 2}
    assert outcomes == ["active", "inactive", "inactive", "active"]


async def test_concurrent_requests_of_one_user_share_one_look_up() -> None:
    redis = Redis({"d1"})
    redis.hang = True
    trips, _, _ = make(redis, wait_s=5.0)
    waiting = [asyncio.ensure_future(trips.is_active("d1")) for _ in range(5)]
    await asyncio.sleep(0)
    redis.release.set()
    assert await asyncio.gather(*waiting) == [True] * 5
    assert redis.asked == {"d1": 1}


async def test_a_caller_that_leaves_does_not_cancel_the_others() -> None:
    redis = Redis({"d1"})
    redis.hang = True
    trips, _, _ = make(redis, wait_s=5.0)
    leaving = asyncio.ensure_future(trips.is_active("d1"))
    staying = asyncio.ensure_future(trips.is_active("d1"))
    await asyncio.sleep(0)
    leaving.cancel()
    redis.release.set()
    assert await staying is True
    assert leaving.cancelled()


async def test_a_hung_redis_counts_as_not_in_a_trip_and_is_not_asked_again_for_a_while() -> None:
    redis = Redis({"d1"})
    redis.hang = True
    trips, clock, outcomes = make(redis, wait_s=0.01)
    assert await trips.is_active("d1") is False
    assert outcomes == ["failed"]
    # Paused: other users are answered without a look-up, so without a wait.
    assert await trips.is_active("d2") is False
    assert redis.asked == {"d1": 1}
    redis.hang = False
    clock.advance(5.0)
    assert await trips.is_active("d1") is True
    assert outcomes == ["failed", "active"]


async def test_a_failing_redis_counts_as_not_in_a_trip() -> None:
    redis = Redis({"d1"})
    redis.fail = True
    trips, _, outcomes = make(redis)
    assert await trips.is_active("d1") is False
    assert outcomes == ["failed"]
    assert trips.cached("d1") is None


async def test_the_oldest_answers_go_first_past_max_entries() -> None:
    redis = Redis(set())
    trips, _, _ = make(redis, max_entries=3)
    for user in ("a", "b", "c", "d"):
        await trips.is_active(user)
    assert [trips.cached(user) for user in ("a", "b", "c", "d")] == [None, False, False, False]
