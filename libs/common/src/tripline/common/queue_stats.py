"""What the worker reports about its queues in Redis, and how the monitor reads it back.

Celery's Redis broker keeps only the waiting messages, so everything else an operator asks of
a queue is recorded here by the worker:

- finished, failed and retried tasks per queue in 10-second buckets (``stats:<queue>:<kind>:<n>``,
  expiring after two hours) plus running totals (``stats:<queue>:<kind>:total``);
- the time tasks kept a worker busy, per queue in the same buckets (``stats:<queue>:busy_ms:<n>``),
  so the time one task takes can be read as busy time over runs;
- a heartbeat per worker: ``workers:seen`` (a sorted set of node name → last beat, the index of
  nodes) and ``workers:info:<node>`` (the queues it consumes, its pool and concurrency), which
  expires :data:`HEARTBEAT_TTL_S` after the node's latest beat. A worker is a live consumer
  exactly while that key exists: Redis's clock decides, so the hosts' clocks need not agree,
  and a worker SIGKILLed mid-beat is gone within the TTL without saying goodbye;
- the time each message was published, in its ``tripline_sent_at`` header, so the age of the
  oldest waiting message can be read off the list's tail.

Everything here is pure: key names and bucket arithmetic. Writers and readers bring their client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tripline.common.queues import Queue

BUCKET_S = 10
BUCKET_TTL_S = 2 * 3600
# The monitor must notice a dead worker within two of its health looks (2 s each by default):
# a key living 2 s after the last beat is gone at most 2 s after a SIGKILL, and the next look
# sees it. Beating every 0.5 s lets three beats in a row be late before a live worker is
# missed; it costs one pipelined round trip per worker every 0.5 s.
HEARTBEAT_INTERVAL_S = 0.5
HEARTBEAT_TTL_S = 2.0
# Nodes that beat within this long are looked up; whether one is live is its key's TTL. Wide,
# so clocks of hosts that disagree by less than this cannot hide a live node.
NODE_LOOKBACK_S = 60.0
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


def busy_key(queue: Queue | str, bucket: int) -> str:
    """Milliseconds tasks of ``queue`` that ended in ``bucket`` ran for (every run counts)."""
    return f"stats:{queue}:busy_ms:{bucket}"


def worker_info_key(node: str) -> str:
    return f"workers:info:{node}"


@dataclass(frozen=True)
class WorkerInfo:
    node: str
    queues: tuple[str, ...]
    pool: str
    concurrency: int
    boot: str = ""
    """This run of the worker process: a node started again under its name has another."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "queues": self.queues,
                "pool": self.pool,
                "concurrency": self.concurrency,
                "boot": self.boot,
            }
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
                str(data.get("boot", "")),
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


@dataclass(frozen=True)
class QueueConsumers:
    """Who consumes one queue right now: live workers, and the tasks they can run at once."""

    workers: int = 0
    slots: int = 0


def live_workers(nodes: Sequence[str], raw_infos: Sequence[str | bytes | None]) -> list[WorkerInfo]:
    """The workers whose info key was still there (``raw_infos`` read for ``nodes``, in order):
    an expired or unreadable key is a worker that cannot be counted on."""
    workers = []
    for node, raw in zip(nodes, raw_infos, strict=True):
        info = WorkerInfo.from_json(node, raw) if raw is not None else None
        if info is not None:
            workers.append(info)
    return workers


def consumers_by_queue(
    workers: Iterable[WorkerInfo], queues: Sequence[str]
) -> Mapping[str, QueueConsumers]:
    """Each of ``queues`` with the live workers consuming it and their summed concurrency; a
    queue nobody consumes has zero of both."""
    found = {queue: QueueConsumers() for queue in queues}
    for info in workers:
        for queue in set(info.queues) & found.keys():
            seen = found[queue]
            found[queue] = QueueConsumers(seen.workers + 1, seen.slots + max(0, info.concurrency))
    return found


def seconds_per_task(busy_ms: Iterable[Any], runs: Iterable[Any]) -> float | None:
    """The mean time one run took (busy milliseconds over runs, as read from the buckets; None
    entries are empty buckets); None when nothing ran or no time was recorded."""
    busy = sum(int(value) for value in busy_ms if value is not None)
    count = sum(int(value) for value in runs if value is not None)
    if busy <= 0 or count <= 0:
        return None
    return busy / 1000 / count
