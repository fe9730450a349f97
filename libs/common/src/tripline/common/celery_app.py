"""The Celery application shared by the worker (consumer) and the services (producers)."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu import Queue as KombuQueue
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from tripline.common.errors import DependencyUnavailable
from tripline.common.queue_stats import SENT_AT_HEADER
from tripline.common.queues import TASK_QUEUES, Queue, Task
from tripline.common.settings import ServiceSettings

# Redis redelivers an unacknowledged message after this long (``CELERY_VISIBILITY_TIMEOUT_S``
# by default); longer than any task may run or wait to retry.
VISIBILITY_TIMEOUT_S = 3600


def create_celery(settings: ServiceSettings, main: str = "tripline") -> Celery:
    """Create a Celery app on the Redis broker with at-least-once delivery settings.

    Tasks are acknowledged after they finish (``acks_late``) and requeued if the worker dies
    mid-task, so every task must be idempotent. Priorities stay off: with them on, Redis splits
    each queue into several keys and queue depth can no longer be read with one ``LLEN``.
    """
    app = Celery(main, broker=settings.redis_url, backend=settings.redis_url)
    # Signals are process-wide; the uid keeps a second app in the process from stamping twice.
    before_task_publish.connect(stamp_sent_at, weak=False, dispatch_uid="tripline-sent-at")
    app.conf.update(
        task_queues=[KombuQueue(queue.value, routing_key=queue.value) for queue in Queue],
        task_default_queue=Queue.SYSTEM.value,
        task_routes={task.value: {"queue": queue.value} for task, queue in TASK_QUEUES.items()},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=3600,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout_s,
            # How soon a dead worker's unacknowledged task goes back on its queue once its
            # visibility has run out: kombu's default sweep is every ~100 s (10 s, and only
            # one call in 10 scans); one cheap scan every quarter of the visibility, at most
            # a minute, keeps redelivery close to the visibility timeout.
            "unacked_restore_interval": max(1, min(60, settings.celery_visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1,
            "socket_timeout": settings.redis_socket_timeout_s,
            "socket_connect_timeout": settings.redis_socket_timeout_s,
            "health_check_interval": 15,
        },
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        timezone="UTC",
        enable_utc=True,
    )
    return app


def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Record when a message was published, so the monitor can tell how long the oldest one
    has waited (the broker keeps no time of its own). A retry is stamped anew."""
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


def enqueue(app: Celery, task: Task, *args: str) -> None:
    """Publish ``task(*args)`` on its queue (``TASK_QUEUES``), without importing the worker.

    Blocking (it talks to the broker): from ``async`` code call it with ``asyncio.to_thread``.
    Raises :class:`DependencyUnavailable` at once when the broker does not take the message,
    rather than retrying, so a request that cannot queue its work hears of it while it can
    still answer honestly.
    """
    try:
        app.send_task(task.value, args=list(args), queue=TASK_QUEUES[task].value, retry=False)
    except (KombuError, RedisError, OSError) as exc:
        raise DependencyUnavailable("redis", "work cannot be queued right now") from exc
