"""The monitor's looks at a real redis-server: queue status kept across failures, and never
asked of a Redis the latest health look found down."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from tripline.common.health import Health
from tripline.common.queue_stats import WorkerInfo
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import Server, scaled
from tripline.monitor.checks import ConsumerCheck, ReplicaProber
from tripline.monitor.queues import ALL_QUEUES, QueueReader, QueueStatus
from tripline.monitor.watch import Watch
from tripline.worker.stats import Heartbeat

pytestmark = pytest.mark.integration

NOW = 1_700_000_000.0


class CountingReader(QueueReader):
    """A real reader that also counts how often it was asked to read."""

    reads = 0

    async def read(self) -> QueueStatus:
        self.reads += 1
        return await super().read()


@pytest.fixture
def redis(fresh_redis: Server) -> Iterator[Redis]:
    client = Redis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=scaled(5))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_redis(fresh_redis: Server) -> AsyncIterator[AsyncRedis]:
    # Its own timeouts are long: the watch's bounds must be what cut a hang short.
    client = AsyncRedis.from_url(
        f"redis://127.0.0.1:{fresh_redis.port}/0",
        socket_timeout=scaled(30),
        socket_connect_timeout=scaled(30),
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


class Looks:
    """A watch over the test's Redis, with what it told ``on_queues``."""

    def __init__(self, redis: AsyncRedis, http: httpx.AsyncClient, *, read_timeout_s: float):
        self.heard: list[QueueStatus] = []
        self.health = Health(timeout_s=scaled(0.5))

        async def ping() -> None:
            await redis.ping()

        self.health.add("redis", ping)
        self.reader = CountingReader(redis, clock=FakeClock(NOW))
        consumers = ConsumerCheck(QueueReader(redis, clock=FakeClock(NOW)))
        self.health.add("queues", consumers, required=False)
        self.watch = Watch(
            self.health,
            ReplicaProber(http, [], timeout_s=scaled(1)),
            self.reader,
            read_timeout_s=read_timeout_s,
            on_queues=self.heard.append,
            consumers=consumers,
            clock=FakeClock(NOW),
        )


def waiting(redis: Redis, queue: str, count: int) -> None:
    for n in range(count):
        redis.lpush(queue, json.dumps({"headers": {}, "body": str(n)}))


async def test_a_redis_found_down_is_not_asked_and_the_last_status_is_served(
    fresh_redis: Server, redis: Redis, async_redis: AsyncRedis, http: httpx.AsyncClient
) -> None:
    looks = Looks(async_redis, http, read_timeout_s=scaled(5))
    waiting(redis, "documents", 2)
    first = await looks.watch.look_at_queues()
    assert first.error is None
    assert first.status is not None
    assert {queue.name: queue.depth for queue in first.status.queues}["documents"] == 2

    fresh_redis.stop()
    await looks.watch.look_at_health()
    book = looks.watch.book.records["redis"]
    assert (book.checked, book.ok) == (True, False)

    started = time.monotonic()
    second = await looks.watch.look_at_queues()
    elapsed = time.monotonic() - started

    assert second.status is first.status
    assert second.error == book.last_error
    assert second.error is not None
    assert looks.reader.reads == 1
    assert looks.heard == [first.status]
    assert elapsed < scaled(0.5)
    assert looks.watch.queue_look is second


async def test_a_hung_redis_found_down_costs_a_queue_look_nothing(
    fresh_redis: Server, redis: Redis, async_redis: AsyncRedis, http: httpx.AsyncClient
) -> None:
    read_timeout_s = scaled(5)
    looks = Looks(async_redis, http, read_timeout_s=read_timeout_s)
    waiting(redis, "payments", 1)
    first = await looks.watch.look_at_queues()
    fresh_redis.pause()
    try:
        await looks.watch.look_at_health()
        assert looks.watch.book.records["redis"].last_error == (
            f"no answer within {looks.health.timeout_s:g}s"
        )
        started = time.monotonic()
        second = await looks.watch.look_at_queues()
        elapsed = time.monotonic() - started
    finally:
        fresh_redis.resume()

    assert elapsed < read_timeout_s / 5
    assert second.status is first.status
    assert second.error == f"no answer within {looks.health.timeout_s:g}s"
    assert looks.reader.reads == 1


async def test_a_hung_redis_not_yet_found_down_costs_one_read_timeout(
    fresh_redis: Server, redis: Redis, async_redis: AsyncRedis, http: httpx.AsyncClient
) -> None:
    read_timeout_s = scaled(0.5)
    looks = Looks(async_redis, http, read_timeout_s=read_timeout_s)
    waiting(redis, "documents", 1)
    first = await looks.watch.look_at_queues()
    fresh_redis.pause()
    try:
        started = time.monotonic()
        second = await looks.watch.look_at_queues()
        elapsed = time.monotonic() - started
    finally:
        fresh_redis.resume()

    assert read_timeout_s <= elapsed < 2 * read_timeout_s
    assert second.status is first.status
    assert second.error is not None
    assert second.error.startswith("TimeoutError")
    assert looks.heard == [first.status]

    # The interrupted read leaves nothing behind: the next look reads what is there now.
    waiting(redis, "documents", 2)
    third = await looks.watch.look_at_queues()
    assert third.error is None
    assert third.status is not None
    assert {queue.name: queue.depth for queue in third.status.queues}["documents"] == 3


async def test_a_failed_read_keeps_the_last_status_and_says_why(
    fresh_redis: Server, redis: Redis, async_redis: AsyncRedis, http: httpx.AsyncClient
) -> None:
    looks = Looks(async_redis, http, read_timeout_s=scaled(5))
    empty = await looks.watch.look_at_queues()
    assert empty.status is not None
    fresh_redis.stop()

    failed = await looks.watch.look_at_queues()

    assert failed.status is empty.status
    assert failed.error is not None
    assert failed.error.startswith("ConnectionError")
    assert looks.reader.reads == 2
    assert looks.heard == [empty.status]


async def test_queues_are_read_again_once_redis_answers_the_health_look(
    fresh_redis: Server, redis: Redis, async_redis: AsyncRedis, http: httpx.AsyncClient
) -> None:
    looks = Looks(async_redis, http, read_timeout_s=scaled(5))
    await looks.watch.look_at_queues()
    fresh_redis.stop()
    await looks.watch.look_at_health()
    assert (await looks.watch.look_at_queues()).error is not None

    fresh_redis.start()
    waiting(redis, "system", 4)
    await looks.watch.look_at_health()
    assert looks.watch.book.records["redis"].ok
    look = await looks.watch.look_at_queues()

    assert look.error is None
    assert look.status is not None
    assert {queue.name: queue.depth for queue in look.status.queues}["system"] == 4
    assert looks.reader.reads == 2
    assert looks.heard == [looks.heard[0], look.status]


async def test_the_health_look_reports_each_queue_s_consumers_and_the_latest_depth(
    redis: Redis, async_redis: AsyncRedis, http: httpx.AsyncClient
) -> None:
    looks = Looks(async_redis, http, read_timeout_s=scaled(5))
    report = await looks.watch.look_at_health()
    queues = report.dependencies["queues"]
    # No worker at all: nothing moves.
    assert queues["state"] == "down"
    assert queues["last_error"] == "QueuesUnconsumed: no live consumer for " + ", ".join(ALL_QUEUES)
    assert report.status == "degraded"

    waiting(redis, "documents", 2)
    waiting(redis, "notifications", 3)
    for node, consumed in (("worker@a", ("documents",)), ("worker@b", ("documents", "system"))):
        info = WorkerInfo(node, consumed, "threads", 2)
        Heartbeat(redis, info, clock=FakeClock(NOW)).beat()
    await looks.watch.look_at_queues()
    report = await looks.watch.look_at_health()

    assert report.dependencies["queues"]["state"] == "degraded"
    assert report.dependencies["queues"]["detail"] == {
        "workers": 2,
        "consumers": {"system": 1, "documents": 2, "notifications": 0, "payments": 0},
        "unconsumed": ["notifications", "payments"],
        "depth": 5,
    }
    assert report.summary()["dependencies"]["queues"] == "degraded"
    assert report.status == "degraded"
    assert report.dependencies["redis"]["state"] == "ok"
    assert report.checked_at == NOW
    assert looks.watch.report is report

    rest = WorkerInfo("worker@c", ("notifications", "payments"), "prefork", 2)
    Heartbeat(redis, rest, clock=FakeClock(NOW)).beat()
    report = await looks.watch.look_at_health()
    assert report.dependencies["queues"]["state"] == "ok"
    assert report.dependencies["queues"]["detail"]["unconsumed"] == []
    assert report.status == "ok"
