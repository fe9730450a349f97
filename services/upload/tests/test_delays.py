"""What a waiting driver is told, and when: the notice's words, and the notifier against a
real redis-server and the session's MongoDB-compatible server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from celery import Celery
from pymongo import AsyncMongoClient
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from tripline.common.celery_app import create_celery
from tripline.common.documents import QUEUE_KEY
from tripline.common.mongo import Document
from tripline.common.notifications import notification_id, notification_key
from tripline.common.queue_stats import WorkerInfo
from tripline.common.settings import ServiceSettings
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import Backends, Server, scaled
from tripline.devstack.testing import fresh
from tripline.upload.delays import DelayNotifier, delay_notice, notice_text
from tripline.upload.models import ContentType, DocType, UploadRequest
from tripline.upload.queue import CAPACITY_FRESH_S, DocumentQueue, Waiting
from tripline.upload.records import UploadRecords
from tripline.worker.stats import Heartbeat

NOW = 1_700_000_005.0
# A number of seconds or minutes: what a paused queue must never be given.
DURATION = re.compile(r"\d+\s*(s|sec|second|seconds|min|minutes)\b")


def test_a_paused_queue_s_notice_says_so_and_gives_no_duration() -> None:
    text = notice_text("profile_photo", Waiting(3, None, delayed=True, paused=True))
    assert text is not None
    assert text.startswith("Your profile photo is number 3 in line")
    assert "paused" in text
    assert not DURATION.search(text)
    started = notice_text("license", Waiting(0, None, delayed=True, paused=True))
    assert started is not None
    assert "being checked" in started
    assert "paused" in started
    assert not DURATION.search(started)


def test_a_delayed_upload_s_notice_gives_its_position_and_wait_in_minutes() -> None:
    assert notice_text("license", Waiting(40, 610, delayed=True, paused=False)) == (
        "Your license is number 40 in line; checking it should take about 10 min."
    )
    assert "about 1 min" in (notice_text("license", Waiting(2, 5, True, False)) or "")


def test_an_upload_on_time_has_no_notice() -> None:
    on_time = Waiting(2, 4, delayed=False, paused=False)
    assert notice_text("license", on_time) is None
    assert delay_notice("u1", "d1", "license", on_time) is None


def test_the_delay_notice_goes_to_the_driver_about_the_upload_with_a_stable_id() -> None:
    notice = delay_notice("u1", "d1", "license", Waiting(3, None, True, True))
    assert notice is not None
    assert (notice.to, notice.channel, notice.reference) == ("driver:d1", "push", "u1")
    assert notice.id == notification_id("upload-delayed", "u1")
    assert notice.message == notice_text("license", Waiting(3, None, True, True))


@dataclass
class Rig:
    redis: Redis
    clock: FakeClock
    notifier: DelayNotifier

    def beat(self, node: str, concurrency: int = 1) -> None:
        Heartbeat(self.redis, WorkerInfo(node, ("documents",), "threads", concurrency)).beat()

    def told(self, upload_id: str) -> str | None:
        raw = self.redis.hget(
            notification_key(notification_id("upload-delayed", upload_id)), "message"
        )
        return raw.decode() if isinstance(raw, bytes) else raw

    async def check(self) -> int:
        # Each check reads the capacity afresh, as checks DELAY_CHECK_INTERVAL_S apart do.
        self.clock.advance(CAPACITY_FRESH_S)
        return await self.notifier.check()


@pytest.fixture
async def mongo(backends: Backends) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(backends.urls.mongo_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def producer(fresh_redis: Server) -> Iterator[Celery]:
    app = create_celery(ServiceSettings(redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0"))
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
async def rig(
    fresh_redis: Server, mongo: AsyncMongoClient[Document], producer: Celery
) -> AsyncIterator[Rig]:
    url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    redis = Redis.from_url(url, socket_timeout=scaled(5))
    async_redis = AsyncRedis.from_url(url, socket_timeout=scaled(5))
    records = UploadRecords(mongo[fresh("delays")]["uploads"])
    request = UploadRequest(
        doc_type=DocType.LICENSE, filename="l.jpg", content_type=ContentType.JPEG, size_bytes=10
    )
    for n, upload_id in enumerate(("u1", "u2"), start=1):
        await records.create(upload_id, "d1", request, presign_expiry_s=3600)
        await records.mark_queued(upload_id, {"size_bytes": 10})
        redis.zadd(QUEUE_KEY, {upload_id: n})
    clock = FakeClock(NOW)
    # A document takes 2 s and more than 3 s is delayed: with 1 slot, only the second waits.
    queue = DocumentQueue(async_redis, producer, expected_s=2.0, delay_threshold_s=3.0, clock=clock)
    notifier = DelayNotifier(
        async_redis, producer, queue=queue, records=records, owner="me", lease_s=60
    )
    try:
        yield Rig(redis, clock, notifier)
    finally:
        redis.close()
        await async_redis.aclose()


@pytest.mark.integration
async def test_a_pause_is_told_once_it_outlasts_a_check_and_only_once(rig: Rig) -> None:
    assert await rig.check() == 0  # first seen: a worker may be restarting
    assert rig.told("u1") is None
    assert await rig.check() == 2
    told = rig.told("u1")
    assert told is not None
    assert "paused" in told
    assert not DURATION.search(told)
    assert await rig.check() == 0


@pytest.mark.integration
async def test_a_worker_back_before_the_next_check_pages_nobody_about_a_pause(rig: Rig) -> None:
    assert await rig.check() == 0
    rig.beat("worker@documents")
    assert await rig.check() == 1  # the second in line waits past the threshold
    assert rig.told("u1") is None
    assert (
        rig.told("u2") == "Your license is number 2 in line; checking it should take about 1 min."
    )
