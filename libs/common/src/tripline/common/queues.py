"""Celery queue and task names: the one place producers and the worker agree on them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Queue(StrEnum):
    """Every queue the worker consumes. Each is one Redis list on the broker."""

    SYSTEM = "system"
    DOCUMENTS = "documents"
    NOTIFICATIONS = "notifications"
    PAYMENTS = "payments"


class Task(StrEnum):
    """Registered task names, so producers can ``send_task`` without importing the worker."""

    PING = "tripline.system.ping"
    SEND_NOTIFICATION = "tripline.notifications.send"
    CONFIRM_PAYMENT = "tripline.payments.confirm"
    PROCESS_DOCUMENT = "tripline.documents.process"


TASK_QUEUES: Mapping[Task, Queue] = MappingProxyType(
    {
        Task.PING: Queue.SYSTEM,
        Task.SEND_NOTIFICATION: Queue.NOTIFICATIONS,
        Task.CONFIRM_PAYMENT: Queue.PAYMENTS,
        Task.PROCESS_DOCUMENT: Queue.DOCUMENTS,
    }
)
