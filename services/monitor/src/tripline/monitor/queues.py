"""Queue status read from Redis: what waits, what runs, how fast it drains, who consumes it.

Depth counts every Redis list of a queue (one per priority level); in-flight messages sit in
kombu's ``unacked`` hash; rates, failures and workers come from what the worker records
(:mod:`tripline.common.queue_stats`); a queue's workers are its live consumers, the workers
consuming it whose heartbeat key has not expired. Backlogs are the Redis streams where accepted
work waits for a dependency (locations for MongoDB, queued writes, SOS records, dead documents).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from tripline.common.queue_stats import (
    BUCKET_S,
    NODE_LOOKBACK_S,
    WORKERS_SEEN,
    QueueConsumers,
    TaskEvent,
    bucket_key,
    bucket_of,
    consumers_by_queue,
    count_by_queue,
    live_workers,
    queue_keys,
    sent_at,
    total_key,
    worker_info_key,
)
from tripline.common.queues import Queue

BACKLOGS = (
    "tracking:points",
    "core:writes",
    "core:writes:rejected",
    "sos:records",
    "documents:dead",
)
UNACKED = "unacked"
# Beyond this many in-flight entries only the total is read (each entry is a whole message).
UNACKED_SCAN_MAX = 10_000
ALL_QUEUES = tuple(queue.value for queue in Queue)
RATE_WINDOW_S = 60
FAILED_WINDOW_S = 3600


@dataclass(frozen=True)
class QueueState:
    name: str
    depth: int
    in_flight: int | None
    rate_per_min: float
    processed_total: int
    failed_last_hour: int
    failed_total: int
    retried_total: int
    oldest_age_s: float | None
    workers: int


@dataclass(frozen=True)
class Consumers:
    """Who consumes the queues right now: the live worker nodes, and per queue its consumers."""

    workers: int
    queues: Mapping[str, QueueConsumers] = field(default_factory=dict)

    def unconsumed(self) -> list[str]:
        """The queues no live worker consumes, in the order asked."""
        return [name for name, consumers in self.queues.items() if consumers.workers == 0]


@dataclass(frozen=True)
class BacklogState:
    name: str
    length: int


@dataclass(frozen=True)
class QueueStatus:
    checked_at: float
    queues: tuple[QueueState, ...]
    backlogs: tuple[BacklogState, ...]
    unacked_total: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at,
            "queues": [asdict(queue) for queue in self.queues],
            "backlogs": [asdict(backlog) for backlog in self.backlogs],
            "unacked_total": self.unacked_total,
        }


def complete_buckets(now: float, window_s: float) -> list[int]:
    """The whole 10-second buckets making up the ``window_s`` before the current one: the
    rate is measured over finished buckets only, so it never counts a partial one."""
    current = bucket_of(now)
    count = max(1, int(window_s // BUCKET_S))
    return list(range(current - count, current))


def finished_per_minute(processed: Sequence[Any], failed: Sequence[Any]) -> float:
    """Tasks finished (processed or failed for good) per minute over the given whole buckets."""
    finished = sum(_int(value) for value in processed) + sum(_int(value) for value in failed)
    return finished * 60 / (len(processed) * BUCKET_S) if processed else 0.0


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class QueueReader:
    """Reads the status of ``queues`` in a few pipelined round trips; raises RedisError."""

    def __init__(
        self,
        redis: Redis,
        queues: Sequence[str] = ALL_QUEUES,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._queues = tuple(queues)
        self._clock = clock

    async def read(self) -> QueueStatus:
        now = self._clock()
        rate_buckets = complete_buckets(now, RATE_WINDOW_S)
        failed_buckets = [*complete_buckets(now, FAILED_WINDOW_S), bucket_of(now)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue in self._queues:
                for key in queue_keys(queue):
                    pipe.llen(key)
                    pipe.lindex(key, -1)
                pipe.mget([bucket_key(queue, TaskEvent.PROCESSED, b) for b in rate_buckets])
                pipe.mget([bucket_key(queue, TaskEvent.FAILED, b) for b in failed_buckets])
                pipe.mget([total_key(queue, event) for event in TaskEvent])
            for backlog in BACKLOGS:
                pipe.xlen(backlog)
            pipe.hlen(UNACKED)
            pipe.zrangebyscore(WORKERS_SEEN, now - NODE_LOOKBACK_S, "+inf")
            answers: list[Any] = await pipe.execute()
        unacked_total = _int(answers[-2])
        consumers = await self._consumers_of(answers[-1])
        in_flight = await self._in_flight(unacked_total)

        states: list[QueueState] = []
        position = 0
        levels = len(queue_keys(""))
        for queue in self._queues:
            lists = answers[position : position + 2 * levels]
            position += 2 * levels
            processed, failed, totals = answers[position : position + 3]
            position += 3
            depth = sum(_int(length) for length in lists[0::2])
            ages = [now - stamp for raw in lists[1::2] if (stamp := sent_at(raw)) is not None]
            totals_by_event = dict(zip(TaskEvent, (_int(value) for value in totals), strict=True))
            states.append(
                QueueState(
                    name=queue,
                    depth=depth,
                    in_flight=None if in_flight is None else in_flight.get(queue, 0),
                    rate_per_min=finished_per_minute(
                        processed, failed[-len(rate_buckets) - 1 : -1]
                    ),
                    processed_total=totals_by_event[TaskEvent.PROCESSED],
                    failed_last_hour=sum(_int(value) for value in failed),
                    failed_total=totals_by_event[TaskEvent.FAILED],
                    retried_total=totals_by_event[TaskEvent.RETRIED],
                    oldest_age_s=round(max(0.0, max(ages)), 3) if ages and depth else None,
                    workers=consumers.queues[queue].workers,
                )
            )
        backlogs = tuple(
            BacklogState(name, _int(length))
            for name, length in zip(
                BACKLOGS, answers[position : position + len(BACKLOGS)], strict=True
            )
        )
        return QueueStatus(now, tuple(states), backlogs, unacked_total)

    async def consumers(self) -> Consumers:
        """Who consumes each queue now, in two round trips (cheap enough for every health look:
        the node index, then the live nodes' info keys)."""
        since = self._clock() - NODE_LOOKBACK_S
        return await self._consumers_of(
            await self._redis.zrangebyscore(WORKERS_SEEN, since, "+inf")
        )

    async def _consumers_of(self, raw_nodes: Sequence[Any]) -> Consumers:
        nodes = [node.decode() if isinstance(node, bytes) else str(node) for node in raw_nodes]
        raw_infos: list[Any] = (
            await self._redis.mget([worker_info_key(node) for node in nodes]) if nodes else []
        )
        workers = live_workers(nodes, raw_infos)
        return Consumers(len(workers), consumers_by_queue(workers, self._queues))

    async def _in_flight(self, unacked_total: int) -> dict[str, int] | None:
        if unacked_total == 0:
            return {}
        if unacked_total > UNACKED_SCAN_MAX:
            return None
        entries: list[Any] = await self._redis.hvals(UNACKED)
        return count_by_queue(entries, self._queues)
