"""The async Redis client: pooled, health-checked, reconnecting with backoff, and guarded.

This is the one failure boundary for Redis: every command and pipeline of the client goes
through a :class:`~tripline.common.guard.DependencyGuard`. After the first command that finds
Redis not answering (a timeout, a refused or dropped connection, no pooled connection free in
time), every command fails at once with :class:`RedisDown` until the guard's PING succeeds,
so a hung Redis costs one timeout, not one per command. ``RedisDown`` is a redis-py
``ConnectionError``: code that already falls back on ``RedisError`` needs no change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tripline.common.guard import DependencyGuard
from tripline.common.settings import ServiceSettings


class RedisDown(RedisConnectionError):
    """Refused without sending: Redis did not answer lately and has not answered a probe since."""


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means Redis did not answer, as opposed to refusing a command."""
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


class GuardedRedis(Redis):
    """A client whose commands and pipelines pass its :attr:`guard` (see the module docstring)."""

    guard: DependencyGuard

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with self.guard.call():
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client and stop its guard's probe."""
        await self.guard.stop()
        await super().aclose(close_connection_pool)

    async def ping_unguarded(self) -> None:
        """One PING that bypasses the guard: the guard's own probe."""
        await Redis.execute_command(self, "PING")  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.guard = self.guard
        return pipe


class _GuardedPipeline(Pipeline):
    guard: DependencyGuard

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with self.guard.call():
            return await super().execute(raise_on_error)


def create_redis(settings: ServiceSettings) -> GuardedRedis:
    """Create a client; it connects lazily, so Redis being down does not stop start-up.

    Commands retry a few times on connection errors with jittered exponential backoff, and a
    dropped connection is re-established on the next command. A timeout is not retried: a
    server that did not answer in ``REDIS_SOCKET_TIMEOUT_S`` will not answer a retry sooner,
    and a retried ``XADD`` or ``INCR`` could apply twice. When all ``REDIS_MAX_CONNECTIONS``
    are busy a command waits for one (up to the socket timeout) instead of failing at once: a
    burst of requests queues briefly rather than being refused. Close it with ``aclose()``,
    which also stops its guard's probe.
    """
    # Retry's own default also retries timeouts; only connection errors are named here.
    retry = Retry(
        ExponentialWithJitterBackoff(base=0.05, cap=1.0),
        retries=2,
        supported_errors=(RedisConnectionError,),
    )
    retry_on_error: list[type[Exception]] = [RedisConnectionError]
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_socket_timeout_s,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_socket_timeout_s,
        health_check_interval=15,
        retry=retry,
        retry_on_error=retry_on_error,
        client_name=f"{settings.service_name}:{settings.instance_id}",
    )
    client = GuardedRedis(connection_pool=pool, retry=retry, retry_on_error=retry_on_error)
    client.guard = DependencyGuard(
        "redis",
        probe=client.ping_unguarded,
        is_outage=is_outage,
        refusal=lambda: RedisDown("Redis is not answering; probed in the background"),
        probe_interval_s=settings.dependency_probe_interval_s,
        probe_timeout_s=settings.dependency_probe_timeout_s,
    )
    return client


@asynccontextmanager
async def open_redis(settings: ServiceSettings) -> AsyncIterator[GuardedRedis]:
    client = create_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()
        # A client given its pool leaves the pool open when it closes.
        await client.connection_pool.disconnect()


class RedisProbe:
    """Readiness probe: one PING."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def __call__(self) -> None:
        await self._client.ping()
