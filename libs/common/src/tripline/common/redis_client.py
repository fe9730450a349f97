"""The async Redis client: pooled, health-checked, reconnecting with backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tripline.common.settings import ServiceSettings


def create_redis(settings: ServiceSettings) -> Redis:
    """Create a client; it connects lazily, so Redis being down does not stop start-up.

    Commands retry a few times on connection errors with jittered exponential backoff, and a
    dropped connection is re-established on the next command. When all
    ``REDIS_MAX_CONNECTIONS`` are busy a command waits for one (up to the socket timeout)
    instead of failing at once: a burst of requests queues briefly rather than being refused.
    """
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=2)
    retry_on_error: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError]
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
    return Redis(connection_pool=pool, retry=retry, retry_on_error=retry_on_error)


@asynccontextmanager
async def open_redis(settings: ServiceSettings) -> AsyncIterator[Redis]:
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
