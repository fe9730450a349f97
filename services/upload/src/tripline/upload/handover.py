"""Handing over queued uploads whose work never reached the broker.

Completing an upload marks its record ``queued`` in MongoDB, then hands the work to the broker
(Redis) and marks it ``enqueued``. When the broker or Redis refuses in between (an outage), or
the replica dies there, the driver has been told "queued" and nothing will process it unless
completion is called again. Every replica therefore looks, every ``interval_s``, for records
queued more than :data:`~tripline.upload.completion.REQUEUE_AFTER_S` ago and never enqueued,
and hands them over. Two replicas handing over the same upload is harmless: the queue keeps one
place per upload and the document task is idempotent per upload id.

The same look finds uploads a worker died processing: the broker would hand the task to
another worker only after its visibility timeout (an hour). An upload ``processing`` for more
than :data:`ORPHAN_AFTER_S` whose worker's heartbeat key is gone, or names another run of that
worker (it was killed and started again under the same name), is put back to ``queued`` and
handed over at once. A worker only slow to beat loses nothing by it: the document is checked
again and its verdict recorded once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.errors import DependencyUnavailable
from tripline.common.logs import get_logger
from tripline.common.queue_stats import WorkerInfo, worker_info_key
from tripline.upload.completion import REQUEUE_AFTER_S
from tripline.upload.queue import DocumentQueue
from tripline.upload.records import UploadRecords

log = get_logger(__name__)

BATCH = 100
# How long an upload may be processing before its worker's heartbeat is looked at.
ORPHAN_AFTER_S = 10.0


class Handover:
    def __init__(
        self,
        records: UploadRecords,
        queue: DocumentQueue,
        redis: Redis,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._records = records
        self._queue = queue
        self._redis = redis
        self._clock = clock

    async def once(self) -> int:
        """Hand over what is overdue; returns how many were handed over. Raises
        :class:`DependencyUnavailable` when MongoDB, Redis or the broker does not answer."""
        now = self._clock()
        before = now - timedelta(seconds=REQUEUE_AFTER_S)
        overdue = await self._records.never_handed_over(queued_before=before, limit=BATCH)
        orphans = await self._orphans(now - timedelta(seconds=ORPHAN_AFTER_S))
        handed = 0
        for upload_id in [*overdue, *orphans]:
            await self._queue.enqueue(upload_id)
            await self._records.mark_enqueued(upload_id)
            handed += 1
        if handed:
            log.warning("queued uploads handed over again", count=handed)
        return handed

    async def _orphans(self, started_before: datetime) -> list[str]:
        """Uploads whose worker's heartbeat is gone, put back to queued."""
        orphans = []
        found = await self._records.processing_before(started_before, limit=BATCH)
        for upload_id, node, boot in found:
            try:
                raw = None if node is None else await self._redis.get(worker_info_key(node))
            except (RedisError, OSError) as exc:
                raise DependencyUnavailable("redis", "worker heartbeats cannot be read") from exc
            info = None if raw is None or node is None else WorkerInfo.from_json(node, raw)
            alive = info is not None and (boot is None or info.boot == boot)
            if not alive and await self._records.requeue_orphan(upload_id, node):
                log.warning("upload's worker gone, handed over again", upload_id=upload_id)
                orphans.append(upload_id)
        return orphans

    async def run(self, interval_s: float) -> None:
        """:meth:`once` every ``interval_s``, forever; an outage waits for the next round."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.once()
            except DependencyUnavailable as exc:
                log.info("handover postponed", error=str(exc))
