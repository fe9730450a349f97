"""``POST /api/trips/{id}/payment``: the trip's rider pays for it, once.

A trip has at most one payment, whose id derives from the trip's. The record is written to
MongoDB's ``payments`` collection as ``pending`` before the provider is asked, so a charge the
provider may have made is never unknown to us. Then:

* the provider confirms → the record is ``confirmed``, 200;
* the provider times out, fails transiently or its breaker is open → the worker is asked to
  confirm it (``tripline.payments.confirm``), 202 ``pending``; the trip carries on meanwhile;
* the provider refuses → the record is ``declined`` with the provider's reason, 402; paying
  again starts a new attempt (with a new provider idempotency key).

Every attempt has one provider idempotency key (``tripline.common.providers.payment_key``),
used by core and the worker alike, so however often it is sent the rider is charged once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.celery_app import enqueue
from tripline.common.errors import Conflict, DependencyUnavailable, NotFound, TriplineError
from tripline.common.guard import DependencyGuard
from tripline.common.logs import get_logger
from tripline.common.mongo import Document, translate_errors
from tripline.common.queues import Task
from tripline.common.validation import parse_body
from tripline.core.context import core_of
from tripline.core.models import PaymentRequest
from tripline.core.payment_provider import ChargePending, ChargeRefused, PaymentProvider
from tripline.core.repository import stored_time
from tripline.core.trips import TripStatus

log = get_logger(__name__)

PAYMENTS = "payments"
PENDING, CONFIRMED, DECLINED = "pending", "confirmed", "declined"
ORDER_FIELDS = ("amount_cents", "currency", "method")


class PaymentDeclined(TriplineError):
    """The provider refused the charge; the detail says why, in the provider's words."""

    slug = "payment-declined"
    title = "Payment declined"
    status = 402


def payment_id_for(trip_id: str) -> str:
    return hashlib.sha256(f"payment\x00{trip_id}".encode()).hexdigest()[:32]


def payment_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the rider sees of a payment record."""
    view = {
        "payment_id": record["_id"],
        "trip_id": record["trip_id"],
        "status": record["status"],
        **{name: record[name] for name in ORDER_FIELDS},
    }
    if record.get("provider_payment_id"):
        view["provider_payment_id"] = record["provider_payment_id"]
    if record["status"] == DECLINED:
        view["reason"] = record.get("reason")
    return view


def same_order(record: Mapping[str, Any], order: PaymentRequest) -> bool:
    return all(record[name] == getattr(order, name) for name in ORDER_FIELDS)


class PaymentRecords:
    """Payment records in MongoDB. Every method may raise :class:`DependencyUnavailable`."""

    def __init__(
        self,
        payments: AsyncCollection[Document],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        guard: DependencyGuard | None = None,
    ) -> None:
        self._guard = guard
        self._payments = payments
        self._clock = clock

    async def open(self, *, trip_id: str, rider_id: str, order: PaymentRequest) -> Document:
        """The trip's payment record: created ``pending`` (attempt 1), or the existing one."""
        now = stored_time(self._clock)
        record: Document = {
            "_id": payment_id_for(trip_id),
            "trip_id": trip_id,
            "rider_id": rider_id,
            **order.model_dump(mode="json"),
            "status": PENDING,
            "attempt": 1,
            "created_at": now,
            "updated_at": now,
        }
        with translate_errors(self._guard):
            try:
                await self._payments.insert_one(record)
            except DuplicateKeyError:
                existing = await self._payments.find_one({"_id": record["_id"]})
                if existing is None:
                    raise Conflict("the payment changed meanwhile; send it again") from None
                return existing
        return record

    async def new_attempt(self, declined: Mapping[str, Any], order: PaymentRequest) -> Document:
        """Turn a declined record into the next pending attempt with ``order``.

        Raises :class:`Conflict` when another request started that attempt first.
        """
        update = {
            "$set": {
                **order.model_dump(mode="json"),
                "status": PENDING,
                "updated_at": stored_time(self._clock),
            },
            "$inc": {"attempt": 1},
            "$unset": {"reason": ""},
        }
        condition = {"_id": declined["_id"], "status": DECLINED, "attempt": declined["attempt"]}
        with translate_errors(self._guard):
            record = await self._payments.find_one_and_update(
                condition, update, return_document=ReturnDocument.AFTER
            )
        if record is None:
            raise Conflict("the payment changed meanwhile; read the trip and retry")
        return record

    async def settle(
        self, record: Mapping[str, Any], status: str, changes: Mapping[str, Any]
    ) -> Document:
        """Record the outcome of ``record``'s attempt; an outcome already recorded stays.

        Returns the record as it is afterwards.
        """
        condition = {"_id": record["_id"], "attempt": record["attempt"], "status": PENDING}
        update = {"$set": {**changes, "status": status, "updated_at": stored_time(self._clock)}}
        with translate_errors(self._guard):
            settled = await self._payments.find_one_and_update(
                condition, update, return_document=ReturnDocument.AFTER
            )
            if settled is None:
                settled = await self._payments.find_one({"_id": record["_id"]})
        if settled is None:
            raise NotFound(f"no payment {record['_id']}")
        return settled


@dataclass
class Payments:
    """What the payment route needs: the records, the provider and the Celery producer."""

    records: PaymentRecords
    provider: PaymentProvider
    producer: Celery
    on_outcome: Callable[[str], None]

    async def settle_now(self, record: Document) -> Response:
        """Ask the provider to charge ``record``'s attempt and answer with the outcome."""
        try:
            charge = await self.provider.charge(record)
        except ChargePending as exc:
            log.warning("payment pending", payment_id=record["_id"], reason=str(exc))
            await self.confirm_later(record)
            self.on_outcome(PENDING)
            return JSONResponse(payment_view(record), status_code=202)
        except ChargeRefused as exc:
            await self.records.settle(record, DECLINED, {"reason": exc.reason})
            self.on_outcome(DECLINED)
            raise PaymentDeclined(exc.reason) from exc
        changes = {"provider_payment_id": charge.provider_payment_id}
        try:
            record = await self.records.settle(record, CONFIRMED, changes)
        except DependencyUnavailable:
            # Charged, but not recorded: the worker records it (the provider replays the charge
            # for the same key). The rider is told the truth: the payment went through.
            await self.confirm_later(record)
            record = {**record, **changes, "status": CONFIRMED}
        self.on_outcome(CONFIRMED)
        return JSONResponse(payment_view(record))

    async def confirm_later(self, record: Mapping[str, Any]) -> None:
        """Queue the worker's confirmation of ``record``. Raises :class:`DependencyUnavailable`
        when the broker does not take it: the record stays pending and the rider's retry of the
        same request charges with the same key, so nothing is charged twice."""
        try:
            await asyncio.to_thread(enqueue, self.producer, Task.CONFIRM_PAYMENT, record["_id"])
        except DependencyUnavailable as exc:
            raise DependencyUnavailable(
                "redis", "the payment's outcome is not known yet; send the same request again"
            ) from exc


async def pay(request: Request) -> Response:
    payments: Payments = request.app.state.payments
    core = core_of(request)
    identity = await core.identity(request)
    trip_id = request.path_params["trip_id"]
    order = await parse_body(request, PaymentRequest)
    trip = await core.trips.get(trip_id)
    if trip is None or trip["rider_id"] != identity.user_id:
        raise NotFound(f"no trip {trip_id}")
    if trip["status"] == TripStatus.CANCELLED.value:
        raise Conflict(f"trip {trip_id} was cancelled; there is nothing to pay")
    record = await payments.records.open(trip_id=trip_id, rider_id=identity.user_id, order=order)
    if record["status"] == DECLINED:
        record = await payments.records.new_attempt(record, order)
    elif not same_order(record, order):
        raise Conflict(
            f"trip {trip_id} already has a payment of {record['amount_cents']} "
            f"{record['currency']} by {record['method']}"
        )
    if record["status"] == CONFIRMED:
        return JSONResponse(payment_view(record))
    return await payments.settle_now(record)


ROUTES = [Route("/api/trips/{trip_id}/payment", pay, methods=["POST"])]
