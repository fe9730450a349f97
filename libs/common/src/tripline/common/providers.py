"""What services and the worker agree on about outside providers (payments, notifications).

A provider's answer is one of three kinds, and every caller treats them the same way: a 2xx is
done, a transient failure is retried later (it may succeed), anything else is refused for good
and retrying it would only repeat the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class AnswerKind(StrEnum):
    DONE = "done"
    TRANSIENT = "transient"
    REFUSED = "refused"


def is_transient_status(status_code: int) -> bool:
    """Whether an HTTP answer means "try again later" rather than "this request is wrong"."""
    return status_code >= 500 or status_code in (408, 429)


def classify(status_code: int) -> AnswerKind:
    """The kind of a provider's HTTP answer."""
    if 200 <= status_code < 300:
        return AnswerKind.DONE
    if is_transient_status(status_code):
        return AnswerKind.TRANSIENT
    return AnswerKind.REFUSED


def payment_charge(record: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's ``POST /v1/payments`` body for a payment record (``reference`` is the
    payment's id)."""
    return {
        "amount_cents": record["amount_cents"],
        "currency": record["currency"],
        "method": record["method"],
        "reference": record["_id"],
    }


def payment_key(record: Mapping[str, Any]) -> str:
    """The provider's idempotency key for a payment record: one per payment and attempt, so
    every sending of one attempt, by core or by the worker, is the same charge."""
    return f"{record['_id']}:{record['attempt']}"
