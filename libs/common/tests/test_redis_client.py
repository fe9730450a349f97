"""The guarded Redis client against a real server that hangs (SIGSTOP) and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from tripline.common.redis_client import GuardedRedis, RedisDown, create_redis
from tripline.common.settings import ServiceSettings
from tripline.devstack.harness import Server, scaled

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(fresh_redis: Server) -> AsyncIterator[GuardedRedis]:
    redis = create_redis(
        ServiceSettings(
            redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0",
            redis_socket_timeout_s=scaled(0.5),
            dependency_probe_interval_s=0.05,
            instance_id="test",
        )
    )
    try:
        yield redis
    finally:
        await redis.aclose()


async def until_up(client: GuardedRedis) -> None:
    deadline = asyncio.get_running_loop().time() + scaled(10)
    while not client.guard.up:
        assert asyncio.get_running_loop().time() < deadline, "the probe never saw Redis again"
        await asyncio.sleep(0.05)


async def test_a_hung_redis_times_out_once_then_every_command_is_refused_unsent(
    fresh_redis: Server, client: GuardedRedis
) -> None:
    assert await client.set("k", "v")
    fresh_redis.pause()
    try:
        with pytest.raises(RedisTimeoutError):
            await client.get("k")
        assert not client.guard.up
        with pytest.raises(RedisDown):
            await client.get("k")
        async with client.pipeline(transaction=True) as pipe:
            pipe.get("k")
            with pytest.raises(RedisDown):
                await pipe.execute()
        assert client.guard.refusals == 2
    finally:
        fresh_redis.resume()
    # No command is needed to find Redis again: the guard's own PING does.
    await until_up(client)
    assert await client.get("k") == b"v"


async def test_a_timeout_is_not_retried_so_a_command_is_sent_once(
    fresh_redis: Server, client: GuardedRedis
) -> None:
    await client.delete("counter")
    fresh_redis.pause()
    try:
        # INCR reaches the paused server, which applies it when it resumes: a retry after the
        # timeout would have queued a second one.
        with pytest.raises(RedisTimeoutError):
            await client.incr("counter")
    finally:
        fresh_redis.resume()
    await until_up(client)
    assert await client.get("counter") == b"1"
