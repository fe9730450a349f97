"""Queueing a notification for the worker: the record by id in Redis, the id on the queue.

The worker's ``tripline.notifications.send`` task reads ``notification:<id>``, sends it with the
id as the provider's idempotency key and marks it delivered, so an id is one message however
often it is queued. Producers derive ids from what the message is about (an SOS and a
recipient, an upload and its delay), which makes queueing the same notice twice harmless.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.celery_app import enqueue
from tripline.common.errors import DependencyUnavailable
from tripline.common.queues import Task


def notification_key(notification_id: str) -> str:
    return f"notification:{notification_id}"


def notification_id(*parts: str) -> str:
    """A stable id for the notice about ``parts`` (e.g. an SOS id and a recipient)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Notification:
    id: str
    to: str
    channel: str
    message: str
    reference: str

    def fields(self) -> dict[str, str]:
        """The Redis hash the worker reads, by id, when the task runs."""
        return {**asdict(self), "status": "pending"}


async def queue_notifications(
    redis: Redis, producer: Celery, notifications: Sequence[Notification]
) -> None:
    """Store each notification (unless already stored: it may be delivered) and queue it.

    Raises :class:`DependencyUnavailable` when Redis or the broker does not take them.
    """
    try:
        for notification in notifications:
            key = notification_key(notification.id)
            if await redis.exists(key):
                continue
            await redis.hset(key, mapping=notification.fields())  # type: ignore[arg-type]
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("redis", "notifications cannot be queued now") from exc
    for notification in notifications:
        await asyncio.to_thread(enqueue, producer, Task.SEND_NOTIFICATION, notification.id)
