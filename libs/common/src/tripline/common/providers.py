"""What services and the worker agree on about outside providers (payments, notifications).

A provider's answer is one of three kinds, and every caller treats them the same way: a 2xx is
done, a transient failure is retried later (it may succeed), anything else is refused for good
and retrying it would only repeat the refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.common.settings import ServiceSettings


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


def provider_breaker(
    name: str,
    settings: ServiceSettings,
    *,
    failures: int,
    reset_s: float,
    on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
) -> CircuitBreaker:
    """The breaker in front of one provider; every provider's is made here, with one policy.

    It opens on ``failures`` failures in a row (the plan's 50; ``*_BREAKER_FAILURES``), on a
    failure rate (``BREAKER_FAILURE_RATE`` of at least ``BREAKER_MIN_CALLS`` calls within
    ``BREAKER_WINDOW_S``: a provider failing every other call never fails 50 in a row), and, with
    ``BREAKER_OPEN_ON_TIMEOUT``, on one call that timed out: a hung provider costs one timeout,
    not one per call. It lets one call through to probe after ``reset_s``.
    """
    return CircuitBreaker(
        name,
        failure_threshold=failures,
        reset_timeout_s=reset_s,
        failure_rate=settings.breaker_failure_rate,
        min_calls=settings.breaker_min_calls,
        window_s=settings.breaker_window_s,
        open_on_timeout=settings.breaker_open_on_timeout,
        on_change=on_change,
    )


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
