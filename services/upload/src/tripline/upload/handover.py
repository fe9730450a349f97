"""Handing over queued uploads whose work never reached the broker.

Completing an upload marks its record ``queued`` in MongoDB, then hands the work to the broker
(Redis) and marks it ``enqueued``. When the broker or Redis refuses in between (an outage), or
the replica dies there, the driver has been told "queued" and nothing will process it unless
completion is called again. Every replica therefore looks, every ``interval_s``, for records
queued more than :data:`~tripline.upload.completion.REQUEUE_AFTER_S` ago and never enqueued,
and hands them over. Two replicas handing over the same upload is harmless: the queue keeps one
place per upload and the document task is idempotent per upload id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tripline.common.errors import DependencyUnavailable
from tripline.common.logs import get_logger
from tripline.upload.completion import REQUEUE_AFTER_S
from tripline.upload.queue import DocumentQueue
from tripline.upload.records import UploadRecords

log = get_logger(__name__)

BATCH = 100


class Handover:
    def __init__(
        self,
        records: UploadRecords,
        queue: DocumentQueue,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._records = records
        self._queue = queue
        self._clock = clock

    async def once(self) -> int:
        """Hand over what is overdue; returns how many were handed over. Raises
        :class:`DependencyUnavailable` when MongoDB, Redis or the broker does not answer."""
        before = self._clock() - timedelta(seconds=REQUEUE_AFTER_S)
        handed = 0
        for upload_id in await self._records.never_handed_over(queued_before=before, limit=BATCH):
            await self._queue.enqueue(upload_id)
            await self._records.mark_enqueued(upload_id)
            handed += 1
        if handed:
            log.warning("queued uploads handed over again", count=handed)
        return handed

    async def run(self, interval_s: float) -> None:
        """:meth:`once` every ``interval_s``, forever; an outage waits for the next round."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.once()
            except DependencyUnavailable as exc:
                log.info("handover postponed", error=str(exc))
