"""Queues that tell the truth: with the documents worker SIGKILLed (no goodbye, the other
worker still answering), ``GET /health`` turns ``degraded`` naming the documents queue, and a
queued upload's wait turns ``paused`` with no number of seconds. (A replacement worker
finishing the upload is ``test_upload_recovery``'s; the way back to ``ok`` is the unit tests'.)

Real processes throughout: the test's own redis-server (broker and heartbeats), the session's
MongoDB-compatible server and S3, two Celery workers, and the monitor, gateway and upload apps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tripline.common.auth import Role
from tripline.common.queues import Queue
from tripline.devstack.documents import jpeg, presign, send_to_s3
from tripline.devstack.harness import (
    Backends,
    Server,
    python_process,
    scaled,
    serve_app,
    start_together,
)
from tripline.devstack.ports import free_port
from tripline.devstack.probes import celery_worker
from tripline.devstack.testing import auth, eventually, fresh
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.monitor.app import create_app as create_monitor
from tripline.monitor.settings import MonitorSettings
from tripline.upload.app import create_app as create_upload
from tripline.upload.settings import UploadSettings

pytestmark = pytest.mark.integration

ADMIN = auth("ops", Role.ADMIN)
OTHER_QUEUES = ",".join(queue.value for queue in Queue if queue is not Queue.DOCUMENTS)


def worker(name: str, queues: str, redis_url: str, env: dict[str, str], logs: Path) -> Server:
    instance = fresh(name)
    return python_process(
        name,
        "tripline.worker",
        {
            **env,
            "REDIS_URL": redis_url,
            "INSTANCE_ID": instance,
            "WORKER_QUEUES": queues,
            "WORKER_POOL": "threads",
            "WORKER_CONCURRENCY": "2",
        },
        celery_worker(redis_url, f"worker@{instance}"),
        logs / f"{instance}.log",
    )


async def platform(gateway: httpx.AsyncClient, expected: str) -> dict[str, Any]:
    """``GET /health`` once it says ``expected`` (every answer must come, and be 200)."""

    async def says() -> dict[str, Any] | None:
        answer = await gateway.get("/health")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body if body["status"] == expected else None

    return await eventually(says, timeout_s=30)


async def test_a_killed_documents_worker_degrades_health_and_pauses_the_wait(
    backends: Backends,
    fresh_redis: Server,
    settings_for: Callable[..., Any],
    tmp_logs: Path,
) -> None:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    database = fresh("consumers")
    env = {**backends.env(), "MONGO_DB": database}
    documents = worker("documents", Queue.DOCUMENTS.value, redis_url, env, tmp_logs)
    others = worker("others", OTHER_QUEUES, redis_url, env, tmp_logs)
    monitor_port = free_port()
    monitor = settings_for(
        MonitorSettings,
        redis_url=redis_url,
        port=monitor_port,
        monitor_targets=[],
        health_interval_s=0.5,
        scrape_interval_s=0.5,
    )
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = settings_for(
        GatewaySettings,
        redis_url=redis_url,
        core_url=dead,
        upload_url=dead,
        tracking_urls=[dead],
        monitor_url=f"http://127.0.0.1:{monitor_port}",
        health_cache_s=0,
    )
    upload = settings_for(
        UploadSettings, instance_id=fresh("upload"), redis_url=redis_url, mongo_db=database
    )
    driver = fresh("driver")
    try:
        await start_together([documents, others])
        async with (
            serve_app(create_monitor(monitor), port=monitor_port),
            serve_app(create_gateway(gateway)) as gateway_url,
            serve_app(create_upload(upload)) as upload_url,
            httpx.AsyncClient(base_url=gateway_url, timeout=scaled(10)) as front,
            httpx.AsyncClient(base_url=upload_url, timeout=scaled(10)) as uploads,
        ):
            data = jpeg()
            presigned = (await presign(uploads, driver, data, "image/jpeg")).json()
            await send_to_s3(presigned, data, "image/jpeg")
            upload_id = presigned["upload_id"]
            healthy = await platform(front, "ok")
            assert healthy["dependencies"]["queues"] == "ok"

            await asyncio.to_thread(documents.kill)
            killed_at = time.monotonic()
            completed = await uploads.post(
                f"/api/uploads/{upload_id}/complete", headers=auth(driver, Role.DRIVER)
            )
            assert completed.status_code == 202, completed.text

            body = await platform(front, "degraded")
            # Reported, never asserted (a test checks behaviour, not time): how long it lied.
            print(f"degraded {time.monotonic() - killed_at:.2f} s after the SIGKILL")
            assert body["dependencies"]["queues"] == "degraded"
            view = (await front.get("/api/admin/health", headers=ADMIN)).json()
            queues = view["dependencies"]["queues"]
            assert queues["detail"]["unconsumed"] == [Queue.DOCUMENTS.value]
            assert queues["detail"]["consumers"][Queue.NOTIFICATIONS.value] == 1
            assert "documents" in queues["last_error"]

            async def paused() -> dict[str, Any] | None:
                answer = await uploads.get(
                    f"/api/uploads/{upload_id}", headers=auth(driver, Role.DRIVER)
                )
                seen: dict[str, Any] = answer.json()
                return seen if seen.get("paused") else None

            waiting = await eventually(paused)
            assert waiting["status"] == "queued"
            assert waiting["estimated_wait_seconds"] is None
            assert waiting["delayed"] is True
            assert waiting["queue_position"] == 1
            assert "paused" in waiting["notice"]
    finally:
        # Nothing of theirs outlives the test's own Redis: no need to wait for a warm shutdown.
        await asyncio.gather(*(asyncio.to_thread(server.kill) for server in (documents, others)))
