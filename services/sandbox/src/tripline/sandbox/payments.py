"""The payment provider's ledger: every charge is confirmed at once and kept in memory."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tripline.common.errors import NotFound
from tripline.sandbox.idempotency import Replays

# Well inside the range every JSON client represents exactly.
MAX_AMOUNT_CENTS = 10**12


class PaymentRequest(BaseModel):
    """Body of ``POST /v1/payments``."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    amount_cents: StrictInt = Field(gt=0, le=MAX_AMOUNT_CENTS)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    method: str = Field(min_length=1, max_length=64)
    reference: str = Field(min_length=1, max_length=128)


class PaymentQuery(BaseModel):
    """Query of ``GET /v1/payments``; without ``reference`` every payment kept is listed."""

    reference: str | None = Field(default=None, min_length=1, max_length=128)


@dataclass(frozen=True)
class Payment:
    id: str
    amount_cents: int
    currency: str
    method: str
    reference: str
    created_at: float
    status: str = "confirmed"

    def as_dict(self) -> dict[str, Any]:
        """The payment as the provider shows it, with ``created_at`` in ISO 8601 UTC."""
        return {
            "id": self.id,
            "status": self.status,
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "method": self.method,
            "reference": self.reference,
            "created_at": datetime.fromtimestamp(self.created_at, UTC).isoformat(),
        }


class Ledger:
    """The most recent ``capacity`` payments, by id, and the idempotency keys that made them."""

    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.time) -> None:
        self._capacity = capacity
        self._clock = clock
        self._payments: OrderedDict[str, Payment] = OrderedDict()
        self._replays: Replays[Payment] = Replays(capacity)

    def __len__(self) -> int:
        return len(self._payments)

    def confirm(self, request: PaymentRequest, key: str | None = None) -> tuple[Payment, bool]:
        """Confirm a payment; returns it and whether it is a replay of an earlier ``key``.

        Raises :class:`IdempotencyKeyReused` when ``key`` was used for a different request.
        """
        fingerprint = request.model_dump(mode="json")
        if key is not None:
            earlier = self._replays.recall(key, fingerprint)
            if earlier is not None:
                return earlier, True
        payment = Payment(
            id=f"pay_{uuid.uuid4().hex}",
            amount_cents=request.amount_cents,
            currency=request.currency,
            method=request.method,
            reference=request.reference,
            created_at=self._clock(),
        )
        self._payments[payment.id] = payment
        while len(self._payments) > self._capacity:
            self._payments.popitem(last=False)
        if key is not None:
            self._replays.remember(key, fingerprint, payment)
        return payment, False

    def get(self, payment_id: str) -> Payment:
        """Return the payment ``payment_id``; raises :class:`NotFound` if unknown or evicted."""
        payment = self._payments.get(payment_id)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        return payment

    def charges(self, reference: str | None = None) -> list[Payment]:
        """Payments still kept, oldest first; only those for ``reference`` if given. A replay
        of an idempotency key is not a new charge, so each appears once."""
        return [
            payment
            for payment in self._payments.values()
            if reference is None or payment.reference == reference
        ]

    def clear(self) -> None:
        self._payments.clear()
        self._replays.clear()
