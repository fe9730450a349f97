"""The limiter on a real redis-server: the Lua script agrees with :func:`decide`, batches count
every hit, and a stopped or hung Redis degrades to local decisions without slowing them down."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripline.common.ratelimit import Decision, Quota, Source, decide
from tripline.common.ratelimit_redis import LimitScript, RedisLimiter
from tripline.common.redis_client import GuardedRedis, create_redis
from tripline.common.settings import ServiceSettings
from tripline.devstack.harness import Backends, Server, scaled

pytestmark = pytest.mark.integration

QUOTAS = st.builds(Quota, limit=st.integers(1, 6), window_s=st.integers(1, 5))
# Each step: how far the clock moves, then how many hits on each of two keys in one call.
STEPS = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(0, 1.5), st.floats(0, 8)),
        st.lists(st.sampled_from([0, 1]), min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=25,
)


def redis_at(port: int | None) -> GuardedRedis:
    # The production client with a generous socket timeout: the limiter's own timeout must be
    # what cuts a hang short.
    return create_redis(
        ServiceSettings(
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_socket_timeout_s=scaled(10),
            instance_id="test",
        )
    )


def fresh_key() -> str:
    return f"rl:test:{uuid.uuid4().hex}"


@pytest.fixture
async def client(backends: Backends) -> AsyncIterator[GuardedRedis]:
    redis = redis_at(backends.redis.port)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
async def own_client(fresh_redis: Server) -> AsyncIterator[GuardedRedis]:
    redis = redis_at(fresh_redis.port)
    try:
        yield redis
    finally:
        await redis.aclose()


async def eventually_from_redis(limiter: RedisLimiter, key: str, quota: Quota) -> Decision:
    deadline = asyncio.get_running_loop().time() + scaled(10)
    while True:
        decision = await limiter.hit(key, quota)
        if decision.source is Source.REDIS:
            return decision
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the limiter never went back to Redis: {decision}")
        await asyncio.sleep(0.05)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quota=QUOTAS, start=st.floats(0, 1e6), steps=STEPS)
async def test_the_script_agrees_with_decide(
    backends: Backends, quota: Quota, start: float, steps: list[tuple[float, list[int]]]
) -> None:
    redis = redis_at(backends.redis.port)
    script = LimitScript(redis)
    keys = [fresh_key(), fresh_key()]
    models: list[dict[int, int]] = [{}, {}]
    now = start
    try:
        for gap, batch in steps:
            now += gap
            got = await script([(keys[k], quota) for k in batch], now=now)
            expected = []
            for k in batch:
                decision = decide(models[k], now, quota)
                if decision.allowed:
                    models[k][math.floor(now)] = models[k].get(math.floor(now), 0) + 1
                expected.append(decision)
            assert got == expected
            for key in keys:
                assert await redis.hlen(key) <= quota.window_s + 1
                assert await redis.pttl(key) <= (quota.window_s + 1) * 1000
    finally:
        await redis.delete(*keys)
        await redis.aclose()


async def test_one_tick_of_concurrent_hits_is_one_call_admitting_exactly_the_limit(
    client: GuardedRedis,
) -> None:
    limiter = RedisLimiter(client, timeout_s=scaled(2))
    key, quota = fresh_key(), Quota(20, 60)
    decisions = await asyncio.gather(*(limiter.hit(key, quota) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 20
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(20))
    assert all(d.source is Source.REDIS for d in decisions)
    assert all(1 <= d.retry_after_s <= 61 for d in decisions if not d.allowed)
    assert limiter.script_calls == 1


async def test_keys_are_isolated_and_redis_keeps_the_time(client: GuardedRedis) -> None:
    limiter = RedisLimiter(client, timeout_s=scaled(2))
    first, second, quota = fresh_key(), fresh_key(), Quota(2, 60)
    on_first = [await limiter.hit(first, quota) for _ in range(3)]
    on_second = await limiter.hit(second, quota)
    assert [d.allowed for d in on_first] == [True, True, False]
    assert on_first[0] == Decision(
        allowed=True, limit=2, remaining=1, reset_s=61, retry_after_s=0, window_s=60
    )
    assert on_first[2].retry_after_s == on_first[2].reset_s == 61
    assert (on_second.allowed, on_second.remaining) == (True, 1)
    assert 0 < await client.pttl(first) <= 61_000


async def test_a_stopped_redis_degrades_to_local_shares_and_recovers(
    fresh_redis: Server, own_client: GuardedRedis
) -> None:
    changes: list[bool] = []
    limiter = RedisLimiter(
        own_client,
        fallback_divisor=2,
        timeout_s=scaled(1),
        on_mode_change=changes.append,
    )
    key, quota = fresh_key(), Quota(4, 60)
    assert (await limiter.hit(key, quota)).source is Source.REDIS

    await asyncio.to_thread(fresh_redis.stop)
    local = [await limiter.hit(key, quota) for _ in range(3)]
    assert [(d.allowed, d.limit, d.source) for d in local] == [
        (True, 2, Source.LOCAL),
        (True, 2, Source.LOCAL),
        (False, 2, Source.LOCAL),
    ]
    critical = await limiter.hit(key, quota, fail_open=True)
    assert (critical.allowed, critical.source) == (True, Source.FAIL_OPEN)
    assert limiter.degraded
    assert changes == [True]

    await asyncio.to_thread(fresh_redis.start)
    decision = await eventually_from_redis(limiter, key, quota)
    # The restarted Redis is empty (no persistence in tests): it has to load the script again
    # and counts from zero, none of the local decisions having been written to it.
    assert (decision.allowed, decision.remaining, decision.limit) == (True, 3, 4)
    assert not limiter.degraded
    assert changes == [True, False]


async def test_a_hung_redis_costs_one_timeout_then_answers_at_once(
    fresh_redis: Server, own_client: GuardedRedis
) -> None:
    timeout = scaled(0.25)
    changes: list[bool] = []
    limiter = RedisLimiter(own_client, timeout_s=timeout, on_mode_change=changes.append)
    key, quota = fresh_key(), Quota(100, 60)
    assert (await limiter.hit(key, quota)).source is Source.REDIS
    process = fresh_redis.process
    assert process is not None
    process.pause()
    try:
        decisions = [await limiter.hit(key, quota) for _ in range(50)]
        assert all(d.source is Source.LOCAL and d.allowed for d in decisions)
        # The warm-up call, then one that timed out and tripped the client's guard; the other
        # 49 never went to Redis.
        assert (limiter.script_calls, limiter.script_failures) == (2, 1)
        assert not own_client.guard.up
        assert changes == [True]
        # The guard's probe, not a request, finds out whether Redis is back: while it hangs,
        # nothing is sent however long the wait.
        await asyncio.sleep(scaled(1.5))
        assert [(await limiter.hit(key, quota)).source for _ in range(10)] == [Source.LOCAL] * 10
        assert (limiter.script_calls, limiter.script_failures) == (2, 1)
    finally:
        process.resume()
    await eventually_from_redis(limiter, key, quota)
    assert changes == [True, False]
