"""A task round-trips through a real Celery worker process on the real Redis broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tripline.common.celery_app import create_celery
from tripline.common.queues import Queue, Task
from tripline.common.settings import ServiceSettings
from tripline.devstack.harness import Backends, Server, python_process, scaled
from tripline.devstack.probes import celery_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = f"it-{uuid.uuid4().hex[:8]}"
    process = python_process(
        "worker",
        "tripline.worker",
        {**backends.env(), "INSTANCE_ID": instance, "WORKER_CONCURRENCY": "1"},
        celery_worker(backends.urls.redis_url, f"worker@{instance}"),
        Path(tmp_path_factory.mktemp("worker")) / "worker.log",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def producer(backends: Backends) -> Celery:
    return create_celery(ServiceSettings(redis_url=backends.urls.redis_url))


async def test_ping_round_trips_through_the_worker(worker: Server, producer: Celery) -> None:
    nonce = uuid.uuid4().hex
    result = producer.send_task(Task.PING.value, args=[nonce])
    answer = await asyncio.to_thread(result.get, timeout=scaled(30))
    assert answer["nonce"] == nonce
    assert answer["worker"]


def test_every_queue_is_declared_and_consumed(worker: Server, producer: Celery) -> None:
    declared = {queue.name for queue in producer.conf.task_queues}
    assert declared == {queue.value for queue in Queue}
    active = producer.control.inspect(timeout=scaled(3)).active_queues() or {}
    consumed = {queue["name"] for queues in active.values() for queue in queues}
    assert {queue.value for queue in Queue} <= consumed, worker.log_tail()


def test_ping_is_routed_to_the_system_queue(producer: Celery) -> None:
    route = producer.amqp.router.route({}, Task.PING.value)
    assert route["queue"].name == Queue.SYSTEM.value


async def test_the_worker_resumes_after_a_broker_restart(
    fresh_redis: Server, tmp_logs: Path
) -> None:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    instance = f"rs-{uuid.uuid4().hex[:8]}"
    worker = python_process(
        "worker",
        "tripline.worker",
        {"REDIS_URL": redis_url, "INSTANCE_ID": instance, "WORKER_CONCURRENCY": "1"},
        celery_worker(redis_url, f"worker@{instance}"),
        tmp_logs / "worker.log",
    )
    await asyncio.to_thread(worker.start)
    try:
        await asyncio.to_thread(fresh_redis.restart)
        producer = create_celery(ServiceSettings(redis_url=redis_url))
        nonce = uuid.uuid4().hex
        result = producer.send_task(Task.PING.value, args=[nonce])
        answer = await asyncio.to_thread(result.get, timeout=scaled(60))
        assert answer["nonce"] == nonce, worker.log_tail()
        assert worker.process is not None
        assert worker.process.running()
    finally:
        await asyncio.to_thread(worker.stop)
