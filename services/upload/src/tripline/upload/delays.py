"""Delay notices: a driver whose document will wait longer than ``DELAY_THRESHOLD_S`` is told
once, with the position and the estimated wait.

One replica at a time (a lease) walks the queue every ``DELAY_CHECK_INTERVAL_S``; the record's
``delay_notified`` flag, set in one compare-and-set, makes each notice go out once even if two
replicas overlap.
"""

from __future__ import annotations

import asyncio

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.errors import DependencyUnavailable
from tripline.common.lease import Lease
from tripline.common.logs import get_logger
from tripline.common.notifications import Notification, notification_id, queue_notifications
from tripline.upload.queue import DocumentQueue
from tripline.upload.records import UploadRecords

log = get_logger(__name__)

LEASE = "documents:delays:lease"


def delay_notice(
    upload_id: str, driver_id: str, doc_type: str, position: int, wait_s: float
) -> Notification:
    minutes = max(1, round(wait_s / 60))
    return Notification(
        id=notification_id("upload-delayed", upload_id),
        to=f"driver:{driver_id}",
        channel="push",
        message=(
            f"Your {doc_type.replace('_', ' ')} is number {position} in line; "
            f"checking it should take about {minutes} min."
        ),
        reference=upload_id,
    )


class DelayNotifier:
    def __init__(
        self,
        redis: Redis,
        producer: Celery,
        *,
        queue: DocumentQueue,
        records: UploadRecords,
        owner: str,
        lease_s: float,
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._queue = queue
        self._records = records
        self._lease = Lease(redis, LEASE, owner=owner, ttl_s=lease_s)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check()
            except (DependencyUnavailable, RedisError, OSError) as exc:
                log.warning("delay check skipped", error=repr(exc))

    async def check(self) -> int:
        """Notify every newly delayed upload once; returns how many were notified."""
        if not await self._lease.hold():
            return 0
        notified = 0
        for upload_id in await self._queue.queued_ids():
            waiting = await self._queue.waiting(upload_id)
            if not waiting.delayed:
                # Later uploads wait at least as long only when the rate holds; check them all.
                continue
            record = await self._records.get(upload_id)
            if record is None or not await self._records.claim_delay_notice(upload_id):
                continue
            notice = delay_notice(
                upload_id,
                record["driver_id"],
                record["doc_type"],
                waiting.position,
                waiting.estimated_wait_seconds,
            )
            await queue_notifications(self._redis, self._producer, [notice])
            notified += 1
        return notified
