"""The payment confirmation task: finish a charge that core could not settle while the rider
waited (the provider timed out, failed or its breaker was open).

Core owns the ``payments`` records and queues only a payment's id. The task sends the record's
current attempt to the provider with that attempt's idempotency key, the same key core used, so
the provider charges once however often the charge is sent (a redelivered task included), and
records the outcome only while the attempt is still pending. Transient failures are retried
with backoff for many hours (``PAYMENT_MAX_ATTEMPTS``): the money is owed either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from celery import Celery, Task
from pymongo import MongoClient
from pymongo.collection import Collection

from tripline.common.logs import get_logger
from tripline.common.providers import payment_charge, payment_key, provider_breaker
from tripline.common.queues import Task as TaskName
from tripline.worker.provider import ProviderClient
from tripline.worker.retrying import (
    RetryPolicy,
    TransientFailure,
    dependency_calls,
    per_process,
)
from tripline.worker.settings import WorkerSettings

log = get_logger(__name__)

PAYMENTS = "payments"
PENDING = "pending"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    ALREADY_SETTLED = "already_settled"
    MISSING = "missing"
    GAVE_UP = "gave_up"


class Confirmer:
    """Confirms pending payments; one per worker process."""

    def __init__(
        self,
        *,
        payments: Collection[dict[str, Any]],
        provider: ProviderClient,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._payments = payments
        self._provider = provider
        self._clock = clock

    def confirm(self, payment_id: str) -> Outcome:
        """Settle the payment's pending attempt with the provider; returns what happened.

        Raises :class:`TransientFailure` when the provider or MongoDB should be asked again.
        """
        with dependency_calls("mongodb"):
            record = self._payments.find_one({"_id": payment_id})
        if record is None:
            log.error("payment record missing", payment_id=payment_id)
            return Outcome.MISSING
        if record["status"] != PENDING:
            return Outcome.ALREADY_SETTLED
        response = self._provider.post(payment_charge(record), idempotency_key=payment_key(record))
        if response.status_code >= 400:
            reason = f"provider answered {response.status_code}: {response.text[:200]}"
            log.error("payment declined", payment_id=payment_id, reason=reason)
            self._settle(record, Outcome.DECLINED, {"reason": reason})
            return Outcome.DECLINED
        try:
            provider_payment_id = str(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientFailure(f"unreadable provider answer: {exc!r}") from exc
        self._settle(record, Outcome.CONFIRMED, {"provider_payment_id": provider_payment_id})
        log.info("payment confirmed", payment_id=payment_id, attempt=record["attempt"])
        return Outcome.CONFIRMED

    def abandon(self, payment_id: str, reason: str) -> None:
        """Mark the payment as no longer retried by the worker (it stays pending: an operator
        or the rider's next request settles it)."""
        with dependency_calls("mongodb"):
            self._payments.update_one(
                {"_id": payment_id, "status": PENDING},
                {"$set": {"abandoned_reason": reason, "updated_at": self._clock()}},
            )

    def _settle(self, record: Mapping[str, Any], outcome: Outcome, changes: dict[str, Any]) -> None:
        condition = {"_id": record["_id"], "attempt": record["attempt"], "status": PENDING}
        update = {"$set": {**changes, "status": outcome.value, "updated_at": self._clock()}}
        with dependency_calls("mongodb"):
            self._payments.update_one(condition, update)


def create_confirmer(settings: WorkerSettings) -> Confirmer:
    """A confirmer with its own clients; create it in the process that uses it (after fork)."""
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        timeoutMS=settings.mongo_query_timeout_ms,
        tz_aware=True,
        journal=settings.mongo_journal,
    )
    provider = ProviderClient(
        settings.payment_sandbox_url.rstrip("/") + "/v1/payments",
        http=httpx.Client(timeout=settings.payment_timeout_s),
        breaker=provider_breaker(
            "payments",
            settings,
            failures=settings.payment_breaker_failures,
            reset_s=settings.payment_breaker_reset_s,
        ),
    )
    return Confirmer(payments=mongo[settings.mongo_db][PAYMENTS], provider=provider)


def register_payment_tasks(app: Celery, settings: WorkerSettings) -> None:
    confirmer = per_process(lambda: create_confirmer(settings))

    policy = RetryPolicy(
        max_attempts=settings.payment_max_attempts,
        base_s=settings.payment_retry_base_s,
        max_s=settings.payment_retry_max_s,
    )

    def give_up(payment_id: str, reason: str) -> str:
        confirmer().abandon(payment_id, reason)
        return Outcome.GAVE_UP.value

    @app.task(name=TaskName.CONFIRM_PAYMENT.value, bind=True, acks_late=True, max_retries=None)
    def confirm_payment(self: Task[Any, Any], payment_id: str) -> str:
        """Settle ``payment_id`` with the provider; retried on transient failures up to the
        attempt limit. Returns the :class:`Outcome`'s value."""
        try:
            return confirmer().confirm(payment_id).value
        except TransientFailure as exc:
            return policy.retry_or_give_up(
                self,
                exc,
                give_up=lambda reason: give_up(payment_id, reason),
                subject={"payment_id": payment_id},
            )
