"""Queue status against a known workload on a Redis and a worker of the test's own: enqueue
M tasks that succeed and K that fail for good, let a worker drain them, then N more with no
worker — the monitor's numbers must be exactly those."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.common.celery_app import create_celery, enqueue
from tripline.common.notifications import Notification, queue_notifications
from tripline.common.queues import Queue, Task
from tripline.common.settings import ServiceSettings
from tripline.devstack.harness import Server, python_process, scrape_metric, serve_app
from tripline.devstack.ports import free_port
from tripline.devstack.probes import celery_worker
from tripline.devstack.testing import auth, eventually, fresh
from tripline.monitor.app import create_app
from tripline.monitor.settings import MonitorSettings

pytestmark = pytest.mark.integration

SUCCEEDING, FAILING, WAITING = 5, 3, 4
ADMIN = auth("ops", Role.ADMIN)


def worker_for(redis_url: str, backend_env: dict[str, str], logs: Path) -> Server:
    """A worker on the notifications queue whose provider refuses every connection, giving up
    after one attempt: a stored notification fails for good, a missing one is processed."""
    instance = fresh("queue-worker")
    return python_process(
        "worker",
        "tripline.worker",
        {
            **backend_env,
            "REDIS_URL": redis_url,
            "INSTANCE_ID": instance,
            "WORKER_QUEUES": Queue.NOTIFICATIONS.value,
            "WORKER_POOL": "threads",
            "WORKER_CONCURRENCY": "2",
            "NOTIFICATION_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
            "NOTIFICATION_MAX_ATTEMPTS": "1",
            "NOTIFICATION_TIMEOUT_S": "1",
        },
        celery_worker(redis_url, f"worker@{instance}"),
        logs / "worker.log",
    )


async def notifications_queue(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/admin/queues/status", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stale"] is False
    (queue,) = [queue for queue in body["queues"] if queue["name"] == Queue.NOTIFICATIONS.value]
    return dict(queue)


async def test_queue_status_matches_a_known_workload(
    fresh_redis: Server,
    backend_env: dict[str, str],
    settings_for: Callable[..., Any],
    tmp_logs: Path,
) -> None:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    producer = create_celery(ServiceSettings(redis_url=redis_url))
    redis = Redis.from_url(redis_url)
    settings = settings_for(
        MonitorSettings,
        redis_url=redis_url,
        monitor_targets=[],
        health_interval_s=0.5,
        scrape_interval_s=0.5,
    )
    worker = worker_for(redis_url, backend_env, tmp_logs)
    try:
        async with (
            serve_app(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            failing = [
                Notification(fresh("n"), "+15550000", "sms", "hello", "") for _ in range(FAILING)
            ]
            await queue_notifications(redis, producer, failing)
            for _ in range(SUCCEEDING):
                # No record behind the id: the worker finds nothing to send and is done.
                await asyncio.to_thread(enqueue, producer, Task.SEND_NOTIFICATION, fresh("gone"))

            queue = await notifications_queue(client)
            assert queue["depth"] == SUCCEEDING + FAILING
            assert queue["workers"] == 0
            assert queue["oldest_age_s"] is not None
            assert queue["oldest_age_s"] >= 0

            await asyncio.to_thread(worker.start)

            async def drained() -> dict[str, Any] | None:
                queue = await notifications_queue(client)
                done = queue["processed_total"] + queue["failed_total"]
                return queue if queue["depth"] == 0 and done == SUCCEEDING + FAILING else None

            queue = await eventually(drained, timeout_s=60)
            assert queue["processed_total"] == SUCCEEDING
            assert queue["failed_total"] == FAILING
            assert queue["failed_last_hour"] == FAILING
            assert queue["workers"] == 1
            assert queue["oldest_age_s"] is None

            async def rate_measured() -> float | None:
                rate = (await notifications_queue(client))["rate_per_min"]
                return rate if rate == SUCCEEDING + FAILING else None

            # Rates count whole 10-second buckets only: the drain shows once its bucket ends.
            await eventually(rate_measured, timeout_s=30)

            await asyncio.to_thread(worker.stop)
            for _ in range(WAITING):
                await asyncio.to_thread(enqueue, producer, Task.SEND_NOTIFICATION, fresh("later"))
            queue = await notifications_queue(client)
            assert queue["depth"] == WAITING
            assert queue["workers"] == 0

            async def exported() -> float | None:
                value = await scrape_metric(
                    client, "tripline_queue_depth", queue=Queue.NOTIFICATIONS.value
                )
                return value if value == WAITING else None

            await eventually(exported, timeout_s=20)
    finally:
        await asyncio.to_thread(worker.stop)
        await redis.aclose()
        producer.close()
