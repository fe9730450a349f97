"""What the worker reports about its queues in Redis, and how the monitor reads it back.

Celery's Redis broker keeps only the waiting messages, so everything else an operator asks of
a queue is recorded here by the worker:

- finished, failed and retried tasks per queue in 10-second buckets (``stats:<queue>:<kind>:<n>``,
  expiring after two hours) plus running totals (``stats:<queue>:<kind>:total``);
- a heartbeat per worker: ``workers:seen`` (a sorted set of node name → last beat) and
  ``workers:info:<node>`` (the queues it consumes, its pool and concurrency);
- the time each message was published, in its ``tripline_sent_at`` header, so the age of the
  oldest waiting message can be read off the list's tail.

Everything here is pure: key names and bucket arithmetic. Writers and readers bring their client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tripline.common.queues import Queue

BUCKET_S = 10
BUCKET_TTL_S = 2 * 3600
HEARTBEAT_INTERVAL_S = 10.0
# A worker that has not beaten for this long is counted offline.
HEARTBEAT_STALE_S = 3 * HEARTBEAT_INTERVAL_S
WORKERS_SEEN = "workers:seen"
SENT_AT_HEADER = "tripline_sent_at"
# kombu's separator for a queue's priority sub-lists (``documents\x06\x163``); priorities are
# off today, but a queue's depth counts every sub-list so turning them on cannot hide work.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_LEVELS = range(10)
# Every task's Outcome enum ends with this value when it gave up after its last attempt.
GAVE_UP = "gave_up"


class TaskEvent(StrEnum):
    PROCESSED = "processed"
    FAILED = "failed"
    RETRIED = "retried"


def bucket_of(timestamp: float) -> int:
    return int(timestamp // BUCKET_S)


def bucket_key(queue: Queue | str, event: TaskEvent, bucket: int) -> str:
    return f"stats:{queue}:{event}:{bucket}"


def total_key(queue: Queue | str, event: TaskEvent) -> str:
    return f"stats:{queue}:{event}:total"


def queue_keys(queue: Queue | str) -> list[str]:
    """Every Redis list holding ``queue``'s waiting messages (one per priority level)."""
    return [
        str(queue) if level == 0 else f"{queue}{PRIORITY_SEPARATOR}{level}"
        for level in PRIORITY_LEVELS
    ]


def worker_info_key(node: str) -> str:
    return f"workers:info:{node}"


@dataclass(frozen=True)
class WorkerInfo:
    node: str
    queues: tuple[str, ...]
    pool: str
    concurrency: int

    def to_json(self) -> str:
        return json.dumps(
            {"queues": self.queues, "pool": self.pool, "concurrency": self.concurrency}
        )

    @classmethod
    def from_json(cls, node: str, raw: str | bytes) -> WorkerInfo | None:
        """The info a worker wrote, or None when it is not what a worker writes."""
        try:
            data = json.loads(raw)
            if not isinstance(data["queues"], list):
                return None
            return cls(
                node,
                tuple(str(queue) for queue in data["queues"]),
                str(data["pool"]),
                int(data["concurrency"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def sent_at(raw_message: str | bytes | None) -> float | None:
    """The publish time stamped on a broker message (kombu's JSON envelope), if any."""
    if raw_message is None:
        return None
    try:
        envelope = json.loads(raw_message)
        value = envelope["headers"][SENT_AT_HEADER]
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None


def in_flight_queue(raw_unacked: str | bytes) -> str | None:
    """The queue (routing key) of one entry of kombu's ``unacked`` hash:
    ``[message, exchange, routing_key]``."""
    try:
        entry: Any = json.loads(raw_unacked)
        return str(entry[2])
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def count_by_queue(entries: Iterable[str | bytes], queues: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(queues, 0)
    for raw in entries:
        queue = in_flight_queue(raw)
        if queue in counts:
            counts[queue] += 1
    return counts
