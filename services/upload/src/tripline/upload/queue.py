"""The documents queue as the upload service sees it: enqueue once, exact positions, waits.

See :mod:`tripline.common.documents` for the Redis structures shared with the worker.

A wait is estimated from the capacity really there, never from a rate assumed: the live workers
consuming ``documents`` (their heartbeat keys, :mod:`tripline.common.queue_stats`) times each
one's concurrency, over the recent time one document took (the workers' busy time over their
runs in the last :data:`~tripline.common.documents.RATE_WINDOW_S`; ``DOCUMENT_EXPECTED_S`` until
one has run). With no live consumer the queue is *paused*: no number is made up, the estimate is
None and ``paused`` is true until a worker beats again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.celery_app import enqueue
from tripline.common.documents import QUEUE_KEY, QUEUE_TICKET_KEY, RATE_WINDOW_S
from tripline.common.errors import DependencyUnavailable
from tripline.common.queue_stats import (
    NODE_LOOKBACK_S,
    WORKERS_SEEN,
    TaskEvent,
    bucket_key,
    bucket_of,
    busy_key,
    consumers_by_queue,
    live_workers,
    seconds_per_task,
    worker_info_key,
)
from tripline.common.queues import Queue, Task

# A capacity read serves this replica's requests this long: every poll of every waiting driver
# would otherwise cost two more round trips, and a consumer's death shows within the TTL anyway.
CAPACITY_FRESH_S = 1.0

# KEYS: queue, ticket counter. ARGV: upload id. Adds the upload behind every queued one, once.
_ADD = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Capacity:
    """What processes documents right now."""

    consumers: int
    """Live workers consuming the documents queue."""
    slots: int
    """Documents they can process at once: the sum of their concurrency."""
    seconds_per_document: float | None
    """The mean time one run took recently; None when none ran."""

    @property
    def paused(self) -> bool:
        """Nothing consumes the queue: no document moves until a worker comes back."""
        return self.consumers == 0 or self.slots == 0


def estimate_wait_s(position: int, capacity: Capacity, *, expected_s: float) -> float | None:
    """Seconds until the document at ``position`` (1 = next, 0 = being processed) is done, or
    None when the queue is paused (no honest number exists).

    The documents ahead are processed ``slots`` at a time, each round taking the recent time
    per document (``expected_s`` until one was measured); the result is rounded up to a whole
    second.
    """
    if capacity.paused:
        return None
    if position <= 0:
        return 0.0
    per_document = capacity.seconds_per_document or expected_s
    return math.ceil(math.ceil(position / capacity.slots) * per_document)


@dataclass(frozen=True)
class Waiting:
    position: int
    """1 for the next document to be processed; 0 once processing started."""
    estimated_wait_seconds: float | None
    """None while the queue is paused."""
    delayed: bool
    """The wait is over the notice threshold, or unknown because the queue is paused."""
    paused: bool

    def fields(self) -> dict[str, object]:
        return {
            "queue_position": self.position,
            "estimated_wait_seconds": self.estimated_wait_seconds,
            "delayed": self.delayed,
            "paused": self.paused,
        }


def waiting_at(
    position: int, capacity: Capacity, *, expected_s: float, delay_threshold_s: float
) -> Waiting:
    """Where an upload at ``position`` stands given ``capacity``."""
    wait = estimate_wait_s(position, capacity, expected_s=expected_s)
    delayed = wait is None or wait > delay_threshold_s
    return Waiting(position, wait, delayed, capacity.paused)


def capacity_from(
    nodes: list[str], raw_infos: list[Any], busy: list[Any], runs: list[Any]
) -> Capacity:
    """The capacity from what Redis holds: the recently seen nodes and their info keys (read in
    the same order), the busy-time buckets and the run-count buckets of the documents queue."""
    workers = live_workers(nodes, raw_infos)
    documents = consumers_by_queue(workers, [Queue.DOCUMENTS.value])[Queue.DOCUMENTS.value]
    return Capacity(documents.workers, documents.slots, seconds_per_task(busy, runs))


class DocumentQueue:
    """Enqueues uploads and tells where each stands (capacity: what live workers report)."""

    def __init__(
        self,
        redis: Redis,
        producer: Celery,
        *,
        expected_s: float,
        delay_threshold_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._expected_s = expected_s
        self._delay_threshold_s = delay_threshold_s
        self._clock = clock
        self._add = redis.register_script(_ADD)
        self._capacity: tuple[float, Capacity] | None = None

    async def enqueue(self, upload_id: str) -> None:
        """Queue the upload's processing. Raises :class:`DependencyUnavailable` when Redis or
        the broker does not take it (the caller may try again: the position is kept once)."""
        try:
            await self._add(keys=[QUEUE_KEY, QUEUE_TICKET_KEY], args=[upload_id])
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the document cannot be queued now") from exc
        await asyncio.to_thread(enqueue, self._producer, Task.PROCESS_DOCUMENT, upload_id)

    async def waiting(self, upload_id: str, capacity: Capacity | None = None) -> Waiting:
        """Where the upload stands (against ``capacity`` when given, else the current one).
        Raises :class:`DependencyUnavailable` without Redis."""
        try:
            # redis-py types ZRANK as maybe a list (its WITHSCORE form); this one is a rank.
            rank: Any = await self._redis.zrank(QUEUE_KEY, upload_id)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the queue cannot be read now") from exc
        position = 0 if rank is None else int(rank) + 1
        return waiting_at(
            position,
            capacity if capacity is not None else await self.capacity(),
            expected_s=self._expected_s,
            delay_threshold_s=self._delay_threshold_s,
        )

    async def capacity(self) -> Capacity:
        """The capacity now (read at most every :data:`CAPACITY_FRESH_S` by this replica).
        Raises :class:`DependencyUnavailable` without Redis."""
        now = self._clock()
        if self._capacity is not None and 0 <= now - self._capacity[0] < CAPACITY_FRESH_S:
            return self._capacity[1]
        queue = Queue.DOCUMENTS.value
        # The buckets of the window, the current (partial) one included: a mean over runs does
        # not need whole buckets, and the newest runs are the most telling.
        buckets = range(bucket_of(now - RATE_WINDOW_S), bucket_of(now) + 1)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(WORKERS_SEEN, now - NODE_LOOKBACK_S, "+inf")
                pipe.mget([busy_key(queue, bucket) for bucket in buckets])
                pipe.mget([bucket_key(queue, event, b) for event in TaskEvent for b in buckets])
                seen, busy, runs = await pipe.execute()
            nodes = [node.decode() if isinstance(node, bytes) else str(node) for node in seen]
            raw_infos: list[Any] = (
                await self._redis.mget([worker_info_key(node) for node in nodes]) if nodes else []
            )
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the queue cannot be read now") from exc
        capacity = capacity_from(nodes, raw_infos, busy, runs)
        self._capacity = (now, capacity)
        return capacity

    async def queued_ids(self) -> list[str]:
        """Every upload still waiting, first in line first."""
        try:
            members = await self._redis.zrange(QUEUE_KEY, 0, -1)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", "the queue cannot be read now") from exc
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
