"""Celery queue and task names: the one place producers and the worker agree on them."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    """Every queue the worker consumes. Each is one Redis list on the broker."""

    SYSTEM = "system"
    DOCUMENTS = "documents"
    NOTIFICATIONS = "notifications"
    PAYMENTS = "payments"


class Task(StrEnum):
    """Registered task names, so producers can ``send_task`` without importing the worker."""

    PING = "tripline.system.ping"


TASK_QUEUES: dict[Task, Queue] = {
    Task.PING: Queue.SYSTEM,
}
