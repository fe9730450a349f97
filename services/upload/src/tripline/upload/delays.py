"""Delay notices: a driver whose document will wait longer than ``DELAY_THRESHOLD_S``, or whose
document waits on a paused queue (no worker consumes it), is told once.

The notice says what is known: the position and the estimated wait, or, while the queue is
paused, that checking is paused, with no number of seconds (nothing is moving, so any number
would be made up). :func:`notice_text` is also what ``GET /api/uploads/{id}`` shows as
``notice``.

One replica at a time (a lease) walks the queue every ``DELAY_CHECK_INTERVAL_S``; the record's
``delay_notified`` flag, set in one compare-and-set, makes each notice go out once even if two
replicas overlap. A pause is told only once two checks in a row have seen it, so a worker that
restarts between two checks does not page every waiting driver.
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
from tripline.upload.queue import DocumentQueue, Waiting
from tripline.upload.records import UploadRecords

log = get_logger(__name__)

LEASE = "documents:delays:lease"


def notice_text(doc_type: str, waiting: Waiting) -> str | None:
    """What the driver is told about a waiting document: why it waits when it is delayed or
    paused, None when it is on time."""
    what = f"Your {doc_type.replace('_', ' ')}"
    if waiting.paused:
        if waiting.position <= 0:
            return (
                f"{what} was being checked when checking documents paused; "
                "it will be finished as soon as checking resumes."
            )
        return (
            f"{what} is number {waiting.position} in line, but checking documents is paused "
            "right now; it keeps its place and will be checked as soon as checking resumes."
        )
    if not waiting.delayed or waiting.estimated_wait_seconds is None:
        return None
    minutes = max(1, round(waiting.estimated_wait_seconds / 60))
    return (
        f"{what} is number {waiting.position} in line; checking it should take about {minutes} min."
    )


def delay_notice(
    upload_id: str, driver_id: str, doc_type: str, waiting: Waiting
) -> Notification | None:
    """The push notice for a delayed or paused upload; None when it is on time."""
    message = notice_text(doc_type, waiting)
    if message is None:
        return None
    return Notification(
        id=notification_id("upload-delayed", upload_id),
        to=f"driver:{driver_id}",
        channel="push",
        message=message,
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
        # Whether this replica's previous check saw the queue paused. Only a hint: a replica
        # that takes the lease over starts with False and tells a pause one check later.
        self._paused_before = False

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
            self._paused_before = False
            return 0
        capacity = await self._queue.capacity()
        tell_pause = capacity.paused and self._paused_before
        self._paused_before = capacity.paused
        notified = 0
        for upload_id in await self._queue.queued_ids():
            waiting = await self._queue.waiting(upload_id, capacity)
            if not waiting.delayed or (waiting.paused and not tell_pause):
                # The line is walked from its head: an upload on time says nothing of later ones.
                continue
            record = await self._records.get(upload_id)
            if record is None:
                continue
            notice = delay_notice(upload_id, record["driver_id"], record["doc_type"], waiting)
            if notice is None or not await self._records.claim_delay_notice(upload_id):
                continue
            await queue_notifications(self._redis, self._producer, [notice])
            notified += 1
        return notified
