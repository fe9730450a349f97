"""The payment provider, over HTTP, behind a circuit breaker.

Core asks the provider to charge while the rider waits, but never lets a slow or failing
provider hold the request: each call is bounded by ``PAYMENT_TIMEOUT_S`` and, once
``PAYMENT_BREAKER_FAILURES`` calls in a row have failed, the breaker answers "not now" at once
for ``PAYMENT_BREAKER_RESET_S``. Either way the charge becomes :class:`ChargePending` and the
worker confirms it later with the same idempotency key, so the provider charges once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tripline.common.breaker import CircuitBreaker
from tripline.common.providers import AnswerKind, classify, payment_charge, payment_key


class ChargePending(Exception):
    """The provider did not answer in time, failed transiently, or the breaker is open: the
    outcome is unknown and the charge must be confirmed later with the same key."""


@dataclass(frozen=True)
class ChargeRefused(Exception):
    """The provider refused the charge for good (a 4xx other than 408/429)."""

    status_code: int
    reason: str


@dataclass(frozen=True)
class Charge:
    """A charge the provider confirmed."""

    provider_payment_id: str
    status: str


def read_charge(response: httpx.Response) -> Charge:
    """The confirmed charge in a 2xx answer. Raises :class:`ChargePending` when the body is not
    the provider's payment object: the charge may exist, so it is confirmed again later."""
    try:
        data = response.json()
        return Charge(provider_payment_id=str(data["id"]), status=str(data["status"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ChargePending(f"unreadable provider answer: {exc!r}") from exc


class PaymentProvider:
    """Charges through one breaker shared by every request of this replica."""

    def __init__(self, base_url: str, *, http: httpx.AsyncClient, breaker: CircuitBreaker) -> None:
        self._url = base_url.rstrip("/") + "/v1/payments"
        self._http = http
        self.breaker = breaker

    async def charge(self, record: Mapping[str, Any]) -> Charge:
        """Charge the payment ``record`` once (per its attempt) and return the confirmation.

        Raises :class:`ChargePending` when the outcome is unknown or the breaker is open,
        :class:`ChargeRefused` when the provider refuses. Never raises an ``httpx`` error.
        """
        if not self.breaker.try_acquire():
            raise ChargePending(f"breaker open for {self.breaker.retry_after_s():.1f}s")
        try:
            response = await self._http.post(
                self._url,
                json=payment_charge(record),
                headers={"Idempotency-Key": payment_key(record)},
            )
        except httpx.TimeoutException as exc:
            self.breaker.record_timeout()
            raise ChargePending(f"provider did not answer in time: {exc!r}") from exc
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise ChargePending(f"provider unreachable: {exc!r}") from exc
        except BaseException:
            self.breaker.release()
            raise
        kind = classify(response.status_code)
        if kind is AnswerKind.TRANSIENT:
            self.breaker.record_failure()
            raise ChargePending(f"provider answered {response.status_code}")
        # A refusal is the provider answering: it is up, so the breaker counts a success.
        self.breaker.record_success()
        if kind is AnswerKind.REFUSED:
            raise ChargeRefused(response.status_code, _reason(response))
        return read_charge(response)


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or f"provider answered {response.status_code}")[:300]
