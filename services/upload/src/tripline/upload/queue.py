"""The documents queue as the upload service sees it: enqueue once, exact positions, waits.

See :mod:`tripline.common.documents` for the Redis structures shared with the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.celery_app import enqueue
from tripline.common.documents import (
    DONE_KEY,
    QUEUE_KEY,
    QUEUE_TICKET_KEY,
    RATE_WINDOW_S,
    estimate_wait_s,
)
from tripline.common.errors import DependencyUnavailable
from tripline.common.queues import Task

# KEYS: queue, ticket counter. ARGV: upload id. Adds the upload behind every queued one, once.
_ADD = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Waiting:
    position: int
    """1 for the next document to be processed; 0 once processing started."""
    estimated_wait_seconds: float
    delayed: bool

    def fields(self) -> dict[str, object]:
        return {
            "queue_position": self.position,
            "estimated_wait_seconds": self.estimated_wait_seconds,
            "delayed": self.delayed,
        }


class DocumentQueue:
    def __init__(
        self,
        redis: Redis,
        producer: Celery,
        *,
        concurrency: int,
        expected_s: float,
        delay_threshold_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._concurrency = concurrency
        self._expected_s = expected_s
        self._delay_threshold_s = delay_threshold_s
        self._clock = clock
        self._add = redis.register_script(_ADD)

    async def enqueue(self, upload_id: str) -> None:
        """Queue the upload's processing. Raises :class:`DependencyUnavailable` when Redis or
        the broker does not take it (the caller may try again: the position is kept once)."""
        try:
            await self._add(keys=[QUEUE_KEY, QUEUE_TICKET_KEY], args=[upload_id])
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the document cannot be queued now") from exc
        await asyncio.to_thread(enqueue, self._producer, Task.PROCESS_DOCUMENT, upload_id)

    async def waiting(self, upload_id: str) -> Waiting:
        """Where the upload stands. Raises :class:`DependencyUnavailable` without Redis."""
        since = self._clock() - RATE_WINDOW_S
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrank(QUEUE_KEY, upload_id)
                pipe.zcount(DONE_KEY, since, "+inf")
                rank, finished = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the queue cannot be read now") from exc
        position = 0 if rank is None else int(rank) + 1
        wait = estimate_wait_s(
            position,
            finished_recently=int(finished),
            concurrency=self._concurrency,
            default_seconds_per_document=self._expected_s,
        )
        return Waiting(position, wait, wait > self._delay_threshold_s)

    async def queued_ids(self) -> list[str]:
        """Every upload still waiting, first in line first."""
        try:
            members = await self._redis.zrange(QUEUE_KEY, 0, -1)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the queue cannot be read now") from exc
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
