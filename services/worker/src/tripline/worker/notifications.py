"""The notification task: deliver one stored notification to the provider, once.

A producer stores the notification in the Redis hash ``notification:<id>`` and queues only the
id. Delivery is idempotent end to end: a record marked delivered is not sent again, and the
provider is given the notification id as its ``Idempotency-Key``, so a redelivered task (the
worker died after sending, before acknowledging) cannot send a second message. Only transient
failures (timeouts, connection errors, 5xx and 429 answers, an open breaker, MongoDB or Redis
not answering) are retried, with exponential backoff and jitter; a 4xx answer is permanent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from celery import Celery, Task
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError
from redis import Redis
from redis.exceptions import RedisError

from tripline.common.logs import get_logger
from tripline.common.mongo import is_unavailable
from tripline.common.notifications import notification_key
from tripline.common.providers import provider_breaker
from tripline.common.queues import Task as TaskName
from tripline.worker.provider import ProviderClient
from tripline.worker.retrying import RetryPolicy, TransientFailure, per_process
from tripline.worker.settings import WorkerSettings

log = get_logger(__name__)

SOS_COLLECTION = "sos"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    ALREADY_DELIVERED = "already_delivered"
    REJECTED = "rejected"
    MISSING = "missing"
    GAVE_UP = "gave_up"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Notifier:
    """Sends stored notifications through one breaker; one per worker process."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        redis: Redis,
        db: Database[dict[str, Any]],
        provider: ProviderClient,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._redis = redis
        self._db = db
        self._provider = provider
        self._clock = clock

    def deliver(self, notification_id: str) -> Outcome:
        """Send the notification unless it was delivered already; returns what happened.

        On delivery the record is marked delivered and, for an SOS (its ``reference``), the
        delivery is appended to the SOS document's ``deliveries``. Raises
        :class:`TransientFailure` when the caller should retry later.
        """
        record = self._record(notification_id)
        if not record:
            log.error("notification record missing", notification_id=notification_id)
            return Outcome.MISSING
        if record.get("status") == Outcome.DELIVERED.value:
            return Outcome.ALREADY_DELIVERED
        response = self._send(notification_id, record)
        if response.status_code >= 400:
            log.error(
                "notification rejected by the provider",
                notification_id=notification_id,
                status=response.status_code,
                body=response.text[:500],
            )
            self.mark_failed(notification_id, f"provider answered {response.status_code}")
            return Outcome.REJECTED
        reference = record.get("reference")
        if reference:
            self._audit(reference, notification_id, record)
        self._mark(notification_id, Outcome.DELIVERED.value, "")
        return Outcome.DELIVERED

    def mark_failed(self, notification_id: str, reason: str) -> None:
        """Record that the notification will not be delivered, and why."""
        self._mark(notification_id, "failed", reason)

    def _record(self, notification_id: str) -> dict[str, str]:
        try:
            raw: dict[Any, Any] = self._redis.hgetall(notification_key(notification_id))
        except (RedisError, OSError) as exc:
            raise TransientFailure(f"redis: {exc!r}") from exc
        return {_text(name): _text(value) for name, value in raw.items()}

    def _send(self, notification_id: str, record: dict[str, str]) -> httpx.Response:
        body = {
            "to": record["to"],
            "channel": record["channel"],
            "message": record["message"],
            "reference": record.get("reference") or None,
        }
        return self._provider.post(body, idempotency_key=notification_id)

    def _audit(self, sos_id: str, notification_id: str, record: dict[str, str]) -> None:
        delivery = {
            "notification_id": notification_id,
            "to": record["to"],
            "channel": record["channel"],
            "at": self._clock(),
        }
        try:
            # The SOS may not be archived yet: the upsert creates its document, which the
            # archiver completes. Once listed, the filter misses and the upsert collides.
            self._db[SOS_COLLECTION].update_one(
                {"_id": sos_id, "deliveries.notification_id": {"$ne": notification_id}},
                {"$push": {"deliveries": delivery}},
                upsert=True,
            )
        except DuplicateKeyError:
            return
        except PyMongoError as exc:
            if is_unavailable(exc):
                raise TransientFailure(f"mongodb: {exc!r}") from exc
            raise

    def _mark(self, notification_id: str, status: str, reason: str) -> None:
        fields = {"status": status, "reason": reason, "updated_at": self._clock().isoformat()}
        try:
            self._redis.hset(notification_key(notification_id), mapping=fields)  # type: ignore[arg-type]
        except (RedisError, OSError) as exc:
            raise TransientFailure(f"redis: {exc!r}") from exc


def create_notifier(settings: WorkerSettings) -> Notifier:
    """A notifier with its own clients; create it in the process that uses it (after fork)."""
    timeout_ms = settings.mongo_query_timeout_ms
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        timeoutMS=timeout_ms,
        tz_aware=True,
        journal=settings.mongo_journal,
    )
    provider = ProviderClient(
        settings.notification_sandbox_url.rstrip("/") + "/v1/notifications",
        http=httpx.Client(timeout=settings.notification_timeout_s),
        breaker=provider_breaker(
            "notifications",
            settings,
            failures=settings.notification_breaker_failures,
            reset_s=settings.notification_breaker_reset_s,
        ),
    )
    return Notifier(
        settings,
        redis=Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s,
        ),
        db=mongo[settings.mongo_db],
        provider=provider,
    )


def register_notification_tasks(app: Celery, settings: WorkerSettings) -> None:
    notifier = per_process(lambda: create_notifier(settings))

    policy = RetryPolicy(
        max_attempts=settings.notification_max_attempts,
        base_s=settings.notification_retry_base_s,
        max_s=settings.notification_retry_max_s,
    )

    def give_up(notification_id: str, reason: str) -> str:
        notifier().mark_failed(notification_id, reason)
        return Outcome.GAVE_UP.value

    @app.task(name=TaskName.SEND_NOTIFICATION.value, bind=True, acks_late=True, max_retries=None)
    def send_notification(self: Task[Any, Any], notification_id: str) -> str:
        """Deliver ``notification_id``; retried on transient failures up to the attempt limit,
        then marked failed. Returns the :class:`Outcome`'s value."""
        try:
            return notifier().deliver(notification_id).value
        except TransientFailure as exc:
            return policy.retry_or_give_up(
                self,
                exc,
                give_up=lambda reason: give_up(notification_id, reason),
                subject={"notification_id": notification_id},
            )
