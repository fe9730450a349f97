"""Queue status read from a real redis-server holding real Celery messages, the outcomes the
worker's recorder wrote and its heartbeats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st
from kombu import Consumer
from kombu.message import Message
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from tripline.common.celery_app import create_celery, enqueue
from tripline.common.queue_stats import (
    BUCKET_S,
    NODE_LOOKBACK_S,
    SENT_AT_HEADER,
    QueueConsumers,
    TaskEvent,
    WorkerInfo,
    bucket_of,
    sent_at,
    worker_info_key,
)
from tripline.common.queues import Task
from tripline.common.settings import ServiceSettings
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import Server, scaled
from tripline.monitor.queues import (
    ALL_QUEUES,
    BACKLOGS,
    UNACKED,
    UNACKED_SCAN_MAX,
    QueueReader,
    QueueState,
    QueueStatus,
    complete_buckets,
    finished_per_minute,
)
from tripline.worker.stats import Heartbeat, StatsRecorder

# Five seconds into bucket 170_000_000: the current bucket is partial.
NOW = 1_700_000_005.0
PRIORITY_3 = "documents\x06\x163"


@pytest.fixture
def redis_url(fresh_redis: Server) -> str:
    return f"redis://127.0.0.1:{fresh_redis.port}/0"


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=scaled(5))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_redis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis.from_url(redis_url, socket_timeout=scaled(5))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def celery(redis_url: str) -> Iterator[Celery]:
    app = create_celery(ServiceSettings(redis_url=redis_url))
    try:
        yield app
    finally:
        app.close()


def by_name(status: QueueStatus) -> dict[str, QueueState]:
    return {queue.name: queue for queue in status.queues}


def oldest_message(redis: Redis, key: str) -> dict[str, Any]:
    raw = redis.lindex(key, -1)
    assert raw is not None, f"nothing waits in {key!r}"
    message: dict[str, Any] = json.loads(raw)
    return message


def restamped(message: dict[str, Any], stamp: float | None) -> str:
    """The same message as if published at ``stamp`` (or by a producer that stamps nothing)."""
    headers = dict(message["headers"])
    headers.pop(SENT_AT_HEADER, None)
    if stamp is not None:
        headers[SENT_AT_HEADER] = stamp
    return json.dumps({**message, "headers": headers})


def record(redis: Redis, at: float, queue: str, event: TaskEvent, times: int = 1) -> None:
    recorder = StatsRecorder(redis, clock=FakeClock(at))
    for _ in range(times):
        recorder.record(queue, event)


def test_the_rate_buckets_are_the_whole_minute_before_the_current_bucket() -> None:
    current = bucket_of(NOW)
    assert complete_buckets(NOW, 60) == [current + offset for offset in range(-6, 0)]
    assert complete_buckets(current * BUCKET_S, 60) == complete_buckets(NOW, 60)
    assert complete_buckets(NOW, 5) == [current - 1]
    assert len(complete_buckets(NOW, 3600)) == 360


@given(
    processed=st.lists(st.one_of(st.none(), st.integers(0, 1000)), min_size=1, max_size=12),
    data=st.data(),
)
def test_the_rate_is_every_finished_task_over_the_buckets_span(
    processed: list[int | None], data: st.DataObject
) -> None:
    failed = data.draw(
        st.lists(
            st.one_of(st.none(), st.integers(0, 1000)),
            min_size=len(processed),
            max_size=len(processed),
        )
    )
    finished = sum(value or 0 for value in processed) + sum(value or 0 for value in failed)
    minutes = len(processed) * BUCKET_S / 60
    assert finished_per_minute(processed, failed) == pytest.approx(finished / minutes)


def test_the_rate_reads_redis_replies_and_is_zero_without_buckets() -> None:
    assert finished_per_minute([b"3", None, b"0", b"1", None, b"2"], [b"1"] + [None] * 5) == 7.0
    assert finished_per_minute([], []) == 0.0


@pytest.mark.integration
async def test_an_empty_broker_reads_as_idle_queues(async_redis: AsyncRedis) -> None:
    status = await QueueReader(async_redis, clock=FakeClock(NOW)).read()
    assert status.checked_at == NOW
    assert [queue.name for queue in status.queues] == list(ALL_QUEUES)
    for queue in status.queues:
        assert queue == QueueState(
            name=queue.name,
            depth=0,
            in_flight=0,
            rate_per_min=0.0,
            processed_total=0,
            failed_last_hour=0,
            failed_total=0,
            retried_total=0,
            oldest_age_s=None,
            workers=0,
        )
    assert [(backlog.name, backlog.length) for backlog in status.backlogs] == [
        (name, 0) for name in BACKLOGS
    ]
    assert status.unacked_total == 0


@pytest.mark.integration
async def test_depth_counts_every_priority_list_and_age_is_the_oldest_tail(
    celery: Celery, redis: Redis, async_redis: AsyncRedis
) -> None:
    enqueue(celery, Task.PROCESS_DOCUMENT, "upload-1")
    enqueue(celery, Task.PROCESS_DOCUMENT, "upload-2")
    enqueue(celery, Task.SEND_NOTIFICATION, "notification-1")
    first = oldest_message(redis, "documents")
    first_sent = sent_at(json.dumps(first))
    notification_sent = sent_at(json.dumps(oldest_message(redis, "notifications")))
    assert first_sent is not None
    assert notification_sent is not None
    # A message on the priority-3 list, published 50 s before the oldest on the main list.
    redis.lpush(PRIORITY_3, restamped(first, first_sent - 50))

    clock = FakeClock(first_sent + 10)
    queues = by_name(await QueueReader(async_redis, clock=clock).read())

    assert queues["documents"].depth == 3
    assert queues["documents"].oldest_age_s == pytest.approx(60.0, abs=0.001)
    assert queues["notifications"].depth == 1
    assert queues["notifications"].oldest_age_s == pytest.approx(
        first_sent + 10 - notification_sent, abs=0.001
    )
    assert queues["payments"].depth == 0
    assert queues["payments"].oldest_age_s is None
    assert queues["system"].depth == 0


@pytest.mark.integration
async def test_a_message_without_a_publish_time_has_depth_but_no_age(
    celery: Celery, redis: Redis, async_redis: AsyncRedis
) -> None:
    enqueue(celery, Task.CONFIRM_PAYMENT, "payment-1")
    unstamped = restamped(oldest_message(redis, "payments"), None)
    redis.delete("payments")
    redis.lpush("payments", unstamped)

    queues = by_name(await QueueReader(async_redis, clock=FakeClock(NOW)).read())

    assert queues["payments"].depth == 1
    assert queues["payments"].oldest_age_s is None


@pytest.mark.integration
async def test_a_message_stamped_ahead_of_the_clock_has_waited_no_time(
    celery: Celery, redis: Redis, async_redis: AsyncRedis
) -> None:
    enqueue(celery, Task.PING)
    stamp = sent_at(json.dumps(oldest_message(redis, "system")))
    assert stamp is not None

    queues = by_name(await QueueReader(async_redis, clock=FakeClock(stamp - 5)).read())

    assert queues["system"].depth == 1
    assert queues["system"].oldest_age_s == 0.0


@pytest.mark.integration
async def test_workers_are_the_live_heartbeat_keys_consuming_each_queue(
    redis: Redis, async_redis: AsyncRedis
) -> None:
    def beat(node: str, queues: tuple[str, ...], at: float) -> None:
        Heartbeat(redis, WorkerInfo(node, queues, "prefork", 2), clock=FakeClock(at)).beat()

    beat("worker@documents", ("documents",), NOW)
    # Its host's clock is 20 s behind: liveness is its key's TTL, on Redis's clock.
    beat("worker@all", ("documents", "system", "notifications"), NOW - 20)
    # SIGKILLed: it said no goodbye, its key ran out.
    beat("worker@killed", ("payments", "documents"), NOW)
    redis.delete(worker_info_key("worker@killed"))
    # Its key somehow still there, but it has not beaten for longer than the node lookback.
    beat("worker@forgotten", ("payments",), NOW - NODE_LOOKBACK_S - 1)

    reader = QueueReader(async_redis, clock=FakeClock(NOW))
    queues = by_name(await reader.read())

    assert {name: queue.workers for name, queue in queues.items()} == {
        "documents": 2,
        "system": 1,
        "notifications": 1,
        "payments": 0,
    }
    consumers = await reader.consumers()
    assert consumers.workers == 2
    assert consumers.queues["documents"] == QueueConsumers(workers=2, slots=4)
    assert consumers.unconsumed() == ["payments"]


@pytest.mark.integration
async def test_the_rate_counts_the_last_whole_minute_of_processed_and_failed(
    redis: Redis, async_redis: AsyncRedis
) -> None:
    record(redis, NOW - 10, "documents", TaskEvent.PROCESSED, times=3)
    record(redis, NOW - 60, "documents", TaskEvent.PROCESSED, times=2)
    record(redis, NOW - 30, "documents", TaskEvent.FAILED)
    record(redis, NOW - 30, "documents", TaskEvent.RETRIED, times=5)
    # The current (partial) bucket and the one before the minute are left out.
    record(redis, NOW, "documents", TaskEvent.PROCESSED, times=7)
    record(redis, NOW, "documents", TaskEvent.FAILED, times=7)
    record(redis, NOW - 70, "documents", TaskEvent.PROCESSED, times=11)
    record(redis, NOW - 10, "payments", TaskEvent.PROCESSED, times=4)

    queues = by_name(await QueueReader(async_redis, clock=FakeClock(NOW)).read())

    assert queues["documents"].rate_per_min == 6.0
    assert queues["payments"].rate_per_min == 4.0
    assert queues["system"].rate_per_min == 0.0


@pytest.mark.integration
async def test_failures_count_over_the_last_hour_and_in_total(
    redis: Redis, async_redis: AsyncRedis
) -> None:
    record(redis, NOW, "notifications", TaskEvent.FAILED)
    record(redis, NOW - 30, "notifications", TaskEvent.FAILED, times=2)
    record(redis, NOW - 3600, "notifications", TaskEvent.FAILED, times=4)
    record(redis, NOW - 3610, "notifications", TaskEvent.FAILED, times=8)
    record(redis, NOW - 30, "notifications", TaskEvent.PROCESSED, times=3)
    record(redis, NOW - 30, "notifications", TaskEvent.RETRIED, times=16)

    queues = by_name(await QueueReader(async_redis, clock=FakeClock(NOW)).read())

    notifications = queues["notifications"]
    assert notifications.failed_last_hour == 1 + 2 + 4
    assert notifications.failed_total == 1 + 2 + 4 + 8
    assert notifications.processed_total == 3
    assert notifications.retried_total == 16
    assert queues["documents"].failed_total == 0


@pytest.mark.integration
async def test_in_flight_messages_are_counted_per_queue_from_the_unacked_hash(
    celery: Celery, redis: Redis, async_redis: AsyncRedis
) -> None:
    enqueue(celery, Task.PROCESS_DOCUMENT, "upload-1")
    message = oldest_message(redis, "documents")
    redis.hset(
        UNACKED,
        mapping={
            "tag-1": json.dumps([message, "", "documents"]),
            "tag-2": json.dumps([message, "", "documents"]),
            "tag-3": json.dumps([message, "", "payments"]),
            "tag-4": json.dumps([message, "", "celery"]),
        },
    )

    status = await QueueReader(async_redis, clock=FakeClock(NOW)).read()

    queues = by_name(status)
    assert {name: queue.in_flight for name, queue in queues.items()} == {
        "documents": 2,
        "payments": 1,
        "notifications": 0,
        "system": 0,
    }
    assert queues["documents"].depth == 1
    assert status.unacked_total == 4


@pytest.mark.integration
async def test_in_flight_is_unknown_when_too_many_entries_to_read(
    redis: Redis, async_redis: AsyncRedis
) -> None:
    entry = json.dumps([{"headers": {}}, "", "documents"])
    redis.hset(UNACKED, mapping={f"tag-{n}": entry for n in range(UNACKED_SCAN_MAX + 1)})

    status = await QueueReader(async_redis, clock=FakeClock(NOW)).read()

    assert status.unacked_total == UNACKED_SCAN_MAX + 1
    assert all(queue.in_flight is None for queue in status.queues)


@pytest.mark.integration
async def test_backlogs_are_the_lengths_of_their_streams(
    redis: Redis, async_redis: AsyncRedis
) -> None:
    for length, name in enumerate(BACKLOGS, start=1):
        for n in range(length):
            redis.xadd(name, {"n": str(n)})

    status = await QueueReader(async_redis, clock=FakeClock(NOW)).read()

    assert [(backlog.name, backlog.length) for backlog in status.backlogs] == [
        ("tracking:points", 1),
        ("core:writes", 2),
        ("core:writes:rejected", 3),
        ("sos:records", 4),
        ("documents:dead", 5),
    ]


@pytest.mark.integration
async def test_only_the_asked_queues_are_read_and_shown_as_json(
    celery: Celery, redis: Redis, async_redis: AsyncRedis
) -> None:
    enqueue(celery, Task.PROCESS_DOCUMENT, "upload-1")
    enqueue(celery, Task.CONFIRM_PAYMENT, "payment-1")
    stamp = sent_at(json.dumps(oldest_message(redis, "payments")))
    assert stamp is not None
    record(redis, stamp - 10, "payments", TaskEvent.PROCESSED, times=2)
    redis.xadd("sos:records", {"trip": "t1"})

    status = await QueueReader(async_redis, ["payments"], clock=FakeClock(stamp + 2)).read()

    body = json.loads(json.dumps(status.as_dict()))
    assert body["checked_at"] == stamp + 2
    assert body["unacked_total"] == 0
    assert body["queues"] == [
        {
            "name": "payments",
            "depth": 1,
            "in_flight": 0,
            "rate_per_min": 2.0,
            "processed_total": 2,
            "failed_last_hour": 0,
            "failed_total": 0,
            "retried_total": 0,
            "oldest_age_s": pytest.approx(2.0, abs=0.001),
            "workers": 0,
        }
    ]
    assert {"name": "sos:records", "length": 1} in body["backlogs"]
    assert len(body["backlogs"]) == len(BACKLOGS)


@pytest.mark.integration
async def test_a_stopped_redis_is_a_redis_error(
    fresh_redis: Server, async_redis: AsyncRedis
) -> None:
    fresh_redis.stop()
    with pytest.raises(RedisError):
        await QueueReader(async_redis, clock=FakeClock(NOW)).read()


@pytest.mark.integration
async def test_a_message_a_consumer_holds_unacknowledged_counts_in_flight_on_its_queue(
    celery: Celery, async_redis: AsyncRedis
) -> None:
    enqueue(celery, Task.SEND_NOTIFICATION, "notification-1")
    enqueue(celery, Task.SEND_NOTIFICATION, "notification-2")
    held: list[Message] = []
    with celery.connection_for_read() as connection:
        channel = connection.default_channel
        channel.basic_qos(prefetch_count=1)
        consumer = Consumer(
            channel,
            queues=[celery.amqp.queues["notifications"]],
            callbacks=[lambda _body, message: held.append(message)],
            accept=["json"],
        )
        with consumer:
            connection.drain_events(timeout=scaled(5))
            assert len(held) == 1
            status = await QueueReader(async_redis, clock=FakeClock(NOW)).read()
            held[0].ack()

    queues = by_name(status)
    assert (queues["notifications"].depth, queues["notifications"].in_flight) == (1, 1)
    assert status.unacked_total == 1
