"""Waits from the capacity really there: the pure estimate, and the capacity read from what
workers write to a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from tripline.common.celery_app import create_celery
from tripline.common.documents import QUEUE_KEY, RATE_WINDOW_S
from tripline.common.errors import DependencyUnavailable
from tripline.common.queue_stats import TaskEvent, WorkerInfo
from tripline.common.settings import ServiceSettings
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import Server, scaled
from tripline.upload.queue import (
    CAPACITY_FRESH_S,
    Capacity,
    DocumentQueue,
    Waiting,
    estimate_wait_s,
    waiting_at,
)
from tripline.worker.stats import Heartbeat, StatsRecorder

NOW = 1_700_000_005.0
PAUSED = Capacity(consumers=0, slots=0, seconds_per_document=None)
TEN_SLOTS = Capacity(consumers=2, slots=10, seconds_per_document=4.0)


def test_a_paused_queue_has_no_estimate_at_any_position() -> None:
    for position in (0, 1, 50):
        assert estimate_wait_s(position, PAUSED, expected_s=2.0) is None
    # A worker that reports no concurrency can process nothing either.
    assert Capacity(1, 0, 2.0).paused


def test_the_wait_is_rounds_of_slots_ahead_each_taking_the_recent_time_per_document() -> None:
    assert estimate_wait_s(0, TEN_SLOTS, expected_s=2.0) == 0.0
    assert estimate_wait_s(1, TEN_SLOTS, expected_s=2.0) == 4
    assert estimate_wait_s(10, TEN_SLOTS, expected_s=2.0) == 4
    assert estimate_wait_s(11, TEN_SLOTS, expected_s=2.0) == 8
    assert estimate_wait_s(95, TEN_SLOTS, expected_s=2.0) == 40


def test_the_expected_time_stands_in_until_a_document_was_timed() -> None:
    unmeasured = Capacity(consumers=1, slots=4, seconds_per_document=None)
    assert estimate_wait_s(9, unmeasured, expected_s=2.5) == 8
    assert estimate_wait_s(1, Capacity(1, 4, 0.3), expected_s=2.5) == 1


@given(
    position=st.integers(0, 10_000),
    slots=st.integers(1, 200),
    seconds=st.floats(0.001, 600),
)
def test_the_wait_never_shrinks_down_the_line_or_with_fewer_slots(
    position: int, slots: int, seconds: float
) -> None:
    capacity = Capacity(1, slots, seconds)
    wait = estimate_wait_s(position, capacity, expected_s=2.0)
    further = estimate_wait_s(position + 1, capacity, expected_s=2.0)
    fewer = estimate_wait_s(position, Capacity(1, max(1, slots - 1), seconds), expected_s=2.0)
    assert wait is not None
    assert further is not None
    assert fewer is not None
    assert 0 <= wait <= further
    assert wait <= fewer


def test_an_upload_is_delayed_past_the_threshold_or_while_paused() -> None:
    assert waiting_at(5, TEN_SLOTS, expected_s=2.0, delay_threshold_s=3.0) == Waiting(
        5, 4, delayed=True, paused=False
    )
    assert waiting_at(5, TEN_SLOTS, expected_s=2.0, delay_threshold_s=4.0) == Waiting(
        5, 4, delayed=False, paused=False
    )
    assert waiting_at(5, PAUSED, expected_s=2.0, delay_threshold_s=300.0) == Waiting(
        5, None, delayed=True, paused=True
    )


def test_the_fields_keep_the_contract_s_and_add_paused() -> None:
    assert Waiting(3, None, True, True).fields() == {
        "queue_position": 3,
        "estimated_wait_seconds": None,
        "delayed": True,
        "paused": True,
    }


@pytest.fixture
def redis(fresh_redis: Server) -> Iterator[Redis]:
    client = Redis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=scaled(5))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_redis(fresh_redis: Server) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def producer(fresh_redis: Server) -> Iterator[Celery]:
    app = create_celery(ServiceSettings(redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0"))
    try:
        yield app
    finally:
        app.close()


def beat(redis: Redis, node: str, queues: tuple[str, ...], concurrency: int) -> None:
    Heartbeat(redis, WorkerInfo(node, queues, "threads", concurrency)).beat()


@pytest.mark.integration
async def test_the_capacity_is_the_live_documents_consumers_over_the_recent_time_per_run(
    redis: Redis, async_redis: AsyncRedis, producer: Celery
) -> None:
    clock = FakeClock(NOW)
    queue = DocumentQueue(
        async_redis, producer, expected_s=2.0, delay_threshold_s=300.0, clock=clock
    )
    beat(redis, "worker@d1", ("documents",), 10)
    beat(redis, "worker@d2", ("documents", "notifications"), 4)
    beat(redis, "worker@general", ("system", "payments"), 2)
    recorder = StatsRecorder(redis, clock=clock)
    recorder.record("documents", TaskEvent.PROCESSED, 3.0)
    recorder.record("documents", TaskEvent.RETRIED, 1.0)
    recorder.record("payments", TaskEvent.PROCESSED, 100.0)  # another queue's time
    stale = StatsRecorder(redis, clock=FakeClock(NOW - RATE_WINDOW_S - 10))
    stale.record("documents", TaskEvent.PROCESSED, 500.0)  # too long ago to tell

    assert await queue.capacity() == Capacity(consumers=2, slots=14, seconds_per_document=2.0)

    redis.zadd(QUEUE_KEY, {"u1": 1, "u2": 2})
    assert await queue.waiting("u2") == Waiting(2, 2, delayed=False, paused=False)
    assert await queue.waiting("processing") == Waiting(0, 0.0, delayed=False, paused=False)


@pytest.mark.integration
async def test_without_a_live_documents_consumer_the_queue_is_paused(
    redis: Redis, async_redis: AsyncRedis, producer: Celery
) -> None:
    clock = FakeClock(NOW)
    queue = DocumentQueue(
        async_redis, producer, expected_s=2.0, delay_threshold_s=300.0, clock=clock
    )
    beat(redis, "worker@general", ("system", "notifications", "payments"), 2)
    beat(redis, "worker@documents", ("documents",), 10)
    redis.delete("workers:info:worker@documents")  # SIGKILLed: its key ran out
    redis.zadd(QUEUE_KEY, {"u1": 1})

    assert (await queue.capacity()).paused
    assert await queue.waiting("u1") == Waiting(1, None, delayed=True, paused=True)


@pytest.mark.integration
async def test_a_capacity_read_serves_for_a_second_then_is_read_again(
    redis: Redis, async_redis: AsyncRedis, producer: Celery
) -> None:
    clock = FakeClock(NOW)
    queue = DocumentQueue(
        async_redis, producer, expected_s=2.0, delay_threshold_s=300.0, clock=clock
    )
    assert (await queue.capacity()).paused
    beat(redis, "worker@documents", ("documents",), 10)
    clock.advance(CAPACITY_FRESH_S / 2)
    assert (await queue.capacity()).paused
    clock.advance(CAPACITY_FRESH_S / 2)
    assert await queue.capacity() == Capacity(1, 10, None)


@pytest.mark.integration
async def test_without_redis_the_wait_is_a_dependency_unavailable(
    fresh_redis: Server, async_redis: AsyncRedis, producer: Celery
) -> None:
    queue = DocumentQueue(async_redis, producer, expected_s=2.0, delay_threshold_s=300.0)
    fresh_redis.stop()
    with pytest.raises(DependencyUnavailable):
        await queue.capacity()
    with pytest.raises(DependencyUnavailable):
        await queue.waiting("u1")
