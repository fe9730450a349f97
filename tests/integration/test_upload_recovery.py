"""Uploads when things break: a worker killed mid-job, S3 not answering, S3 events.

Each test has its own Redis (broker, queue positions) and its own worker process, so killing or
starving them disturbs no other test; MongoDB and S3 are the session's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.common.celery_app import create_celery
from tripline.common.documents import DONE_KEY, QUEUE_KEY, UPLOADS
from tripline.common.queue_stats import WorkerInfo, worker_info_key
from tripline.common.redis_client import create_redis
from tripline.devstack.documents import jpeg, presign, send_to_s3, verdict
from tripline.devstack.harness import Backends, Server, python_process, scaled, serve_app
from tripline.devstack.probes import celery_worker
from tripline.devstack.testing import auth, eventually, fresh
from tripline.upload.app import create_app
from tripline.upload.completion import REQUEUE_AFTER_S
from tripline.upload.handover import ORPHAN_AFTER_S, Handover
from tripline.upload.queue import DocumentQueue
from tripline.upload.records import UploadRecords
from tripline.upload.settings import UploadSettings

pytestmark = pytest.mark.integration

EVENT_SECRET = "test-event-secret"


@dataclass
class Rig:
    service: httpx.AsyncClient
    worker: Callable[[], Server]
    redis: Redis
    database: str


@pytest.fixture
async def rig(
    backends: Backends,
    fresh_redis: Server,
    settings_for: Callable[..., Any],
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    database = fresh("recovery")
    workers: list[Server] = []

    def new_worker() -> Server:
        instance = fresh("documents")
        server = python_process(
            "worker",
            "tripline.worker",
            {
                **backends.env(),
                "REDIS_URL": redis_url,
                "MONGO_DB": database,
                "INSTANCE_ID": instance,
                "WORKER_QUEUES": "documents,notifications",
                "WORKER_POOL": "threads",
                "WORKER_CONCURRENCY": "4",
                "CELERY_VISIBILITY_TIMEOUT_S": "4",
                "DOCUMENT_RETRY_BASE_S": "0.2",
                "DOCUMENT_RETRY_MAX_S": "1",
                "NOTIFICATION_RETRY_MAX_S": "1",
                "PAYMENT_RETRY_MAX_S": "1",
                "S3_READ_TIMEOUT_S": "1",
                "S3_MAX_ATTEMPTS": "1",
            },
            celery_worker(redis_url, f"worker@{instance}"),
            tmp_path / f"{instance}.log",
        )
        workers.append(server)
        return server

    settings = settings_for(
        UploadSettings,
        instance_id=fresh("upload"),
        redis_url=redis_url,
        mongo_db=database,
        s3_event_secret=EVENT_SECRET,
    )
    redis = Redis.from_url(redis_url)
    try:
        async with (
            serve_app(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=scaled(10)) as service,
        ):
            yield Rig(service, new_worker, redis, database)
    finally:
        await redis.aclose()
        for server in workers:
            await asyncio.to_thread(server.stop)


async def uploaded(rig: Rig, driver: str) -> str:
    data = jpeg()
    presigned = await presign(rig.service, driver, data, "image/jpeg")
    await send_to_s3(presigned.json(), data, "image/jpeg")
    upload_id: str = presigned.json()["upload_id"]
    return upload_id


async def test_a_worker_killed_mid_job_is_replaced_and_the_document_verified_once(
    rig: Rig, backends: Backends
) -> None:
    driver = fresh("driver")
    upload_id = await uploaded(rig, driver)
    done = await rig.service.post(
        f"/api/uploads/{upload_id}/complete", headers=auth(driver, Role.DRIVER)
    )
    assert done.status_code == 202, done.text
    await asyncio.to_thread(backends.s3.pause)  # the job hangs on its download, and retries
    try:
        first = rig.worker()
        await asyncio.to_thread(first.start)

        async def processing() -> bool | None:
            answer = await rig.service.get(
                f"/api/uploads/{upload_id}", headers=auth(driver, Role.DRIVER)
            )
            return True if answer.json()["status"] == "processing" else None

        await eventually(processing)
        await asyncio.to_thread(first.kill)
    finally:
        await asyncio.to_thread(backends.s3.resume)
    second = rig.worker()
    await asyncio.to_thread(second.start)
    view = await verdict(rig.service, driver, upload_id)
    assert view["status"] == "verified"
    assert await rig.redis.zscore(DONE_KEY, upload_id) is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    try:
        documents = await client[rig.database]["driver_documents"].find_one({"_id": driver})
    finally:
        await client.close()
    assert documents is not None
    assert documents["documents"]["license"]["upload_id"] == upload_id


async def test_s3_not_answering_is_retried_until_it_does(rig: Rig, backends: Backends) -> None:
    driver = fresh("driver")
    upload_id = await uploaded(rig, driver)
    done = await rig.service.post(
        f"/api/uploads/{upload_id}/complete", headers=auth(driver, Role.DRIVER)
    )
    assert done.status_code == 202
    await asyncio.to_thread(backends.s3.pause)
    try:
        worker = rig.worker()
        await asyncio.to_thread(worker.start)
    except BaseException:
        await asyncio.to_thread(backends.s3.resume)
        raise

    async def retried() -> bool | None:
        return True if "task retry" in worker.log_path.read_text(errors="replace") else None

    try:
        await eventually(retried)
    finally:
        await asyncio.to_thread(backends.s3.resume)
    assert (await verdict(rig.service, driver, upload_id))["status"] == "verified"


async def test_an_s3_event_completes_the_upload(rig: Rig) -> None:
    driver = fresh("driver")
    upload_id = await uploaded(rig, driver)
    key = (
        await rig.service.get(f"/api/uploads/{upload_id}", headers=auth(driver, Role.DRIVER))
    ).json()
    record_key = f"drivers/{driver}/license/{upload_id}.jpg"
    event = {
        "Records": [{"eventName": "ObjectCreated:Post", "s3": {"object": {"key": record_key}}}]
    }
    refused = await rig.service.post("/internal/uploads/events", json=event)
    assert refused.status_code == 401
    wrong = await rig.service.post(
        "/internal/uploads/events", json=event, headers={"Authorization": "Bearer not-it"}
    )
    assert wrong.status_code == 401
    answer = await rig.service.post(
        "/internal/uploads/events",
        json=event,
        headers={"X-Tripline-Event-Secret": EVENT_SECRET},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] == [{"key": record_key, "outcome": "queued"}]
    # MinIO's webhook can only send its auth_token as a bearer token; a repeat is harmless.
    again = await rig.service.post(
        "/internal/uploads/events", json=event, headers={"Authorization": f"Bearer {EVENT_SECRET}"}
    )
    assert again.status_code == 200, again.text
    assert key["status"] == "pending_upload"
    worker = rig.worker()
    await asyncio.to_thread(worker.start)
    assert (await verdict(rig.service, driver, upload_id))["status"] == "verified"


async def test_a_queued_upload_the_broker_never_took_is_handed_over_once(
    backends: Backends, fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    """Completion marked it queued, then Redis refused the work (or the replica died): the
    driver was told "queued", so the upload service hands it over by itself."""
    settings = settings_for(
        UploadSettings,
        instance_id=fresh("upload"),
        redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0",
        mongo_db=fresh("handover"),
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    redis = create_redis(settings)
    producer = create_celery(settings)
    uploads = client[settings.mongo_db][UPLOADS]
    upload_id, now = fresh("upload"), datetime.now(UTC)
    await uploads.insert_one(
        {"_id": upload_id, "status": "queued", "enqueued": False, "queued_at": now}
    )
    queue = DocumentQueue(redis, producer, expected_s=2, delay_threshold_s=300)
    later = now + timedelta(seconds=REQUEUE_AFTER_S + 1)
    try:
        too_soon = await Handover(UploadRecords(uploads), queue, redis, clock=lambda: now).once()
        handover = Handover(UploadRecords(uploads), queue, redis, clock=lambda: later)
        handed = [await handover.once(), await handover.once()]
        record = await uploads.find_one({"_id": upload_id})
        place = await redis.zscore(QUEUE_KEY, upload_id)
        messages = await redis.llen("documents")
    finally:
        producer.close()
        await redis.aclose()
        await client.close()
    assert (too_soon, handed) == (0, [1, 0])
    assert record is not None
    assert record["enqueued"] is True
    assert place is not None
    assert messages == 1


async def test_an_upload_whose_worker_died_processing_it_is_handed_over(
    backends: Backends, fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    """The broker would give the task to another worker only after its visibility timeout;
    the upload's worker heartbeat says sooner that nobody is processing it."""
    settings = settings_for(
        UploadSettings,
        instance_id=fresh("upload"),
        redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0",
        mongo_db=fresh("orphans"),
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    redis = create_redis(settings)
    producer = create_celery(settings)
    uploads = client[settings.mongo_db][UPLOADS]
    now = datetime.now(UTC)
    started = now - timedelta(seconds=ORPHAN_AFTER_S + 1)
    dead, restarted, alive = fresh("dead"), fresh("restarted"), fresh("alive")
    for upload_id, node in (
        (dead, "worker@gone"),
        (restarted, "worker@again"),
        (alive, "worker@here"),
    ):
        record = {"_id": upload_id, "status": "processing", "processed_by": node}
        await uploads.insert_one({**record, "processed_boot": "run-1", "processing_at": started})
    for node, boot in (("worker@here", "run-1"), ("worker@again", "run-2")):
        info = WorkerInfo(node, ("documents",), "threads", 4, boot=boot)
        await redis.set(worker_info_key(node), info.to_json(), ex=60)
    queue = DocumentQueue(redis, producer, expected_s=2, delay_threshold_s=300)
    try:
        handed = await Handover(UploadRecords(uploads), queue, redis, clock=lambda: now).once()
        records = {doc["_id"]: doc async for doc in uploads.find({})}
        places = [await redis.zscore(QUEUE_KEY, i) for i in (dead, restarted)]
    finally:
        producer.close()
        await redis.aclose()
        await client.close()
    # Gone, and killed then started again under its name: both handed over; alive: left alone.
    assert handed == 2
    for upload_id in (dead, restarted):
        assert (records[upload_id]["status"], records[upload_id]["enqueued"]) == ("queued", True)
    assert records[alive]["status"] == "processing"
    assert None not in places
