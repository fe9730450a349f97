"""The provider boundary: every HTTP outcome becomes a charge, pending or refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.core.payment_provider import ChargePending, ChargeRefused, PaymentProvider

RECORD = {"_id": "pay-1", "attempt": 2, "amount_cents": 500, "currency": "EUR", "method": "card"}


def provider(
    handler: Callable[[httpx.Request], httpx.Response], *, failures: int = 2
) -> tuple[PaymentProvider, CircuitBreaker]:
    breaker = CircuitBreaker("payments", failure_threshold=failures, reset_timeout_s=30)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return PaymentProvider("http://provider/", http=http, breaker=breaker), breaker


async def test_a_confirmed_charge_sends_the_attempts_key_and_the_payment_as_reference() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "prov-9", "status": "confirmed"})

    payments, _breaker = provider(handler)
    charge = await payments.charge(RECORD)
    assert (charge.provider_payment_id, charge.status) == ("prov-9", "confirmed")
    assert seen[0].url == "http://provider/v1/payments"
    assert seen[0].headers["idempotency-key"] == "pay-1:2"
    assert b'"reference":"pay-1"' in seen[0].content


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_transient_answers_are_pending_and_open_the_breaker(status: int) -> None:
    payments, breaker = provider(lambda request: httpx.Response(status))
    for _ in range(2):
        with pytest.raises(ChargePending):
            await payments.charge(RECORD)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(ChargePending, match="breaker open"):
        await payments.charge(RECORD)


async def test_an_unreachable_provider_is_pending() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    payments, _breaker = provider(handler)
    with pytest.raises(ChargePending, match="unreachable"):
        await payments.charge(RECORD)


async def test_a_provider_that_times_out_is_pending_and_a_hang_opens_the_breaker_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    breaker = CircuitBreaker("payments", failure_threshold=50, open_on_timeout=True)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    payments = PaymentProvider("http://provider/", http=http, breaker=breaker)
    with pytest.raises(ChargePending, match="in time"):
        await payments.charge(RECORD)
    assert breaker.state is BreakerState.OPEN


async def test_a_refusal_carries_the_providers_reason_and_keeps_the_breaker_closed() -> None:
    body: dict[str, Any] = {"type": "x", "detail": "card expired"}
    payments, breaker = provider(lambda request: httpx.Response(422, json=body), failures=1)
    with pytest.raises(ChargeRefused) as refused:
        await payments.charge(RECORD)
    assert (refused.value.status_code, refused.value.reason) == (422, "card expired")
    assert breaker.state is BreakerState.CLOSED


async def test_an_unreadable_confirmation_is_pending_so_it_is_confirmed_again() -> None:
    payments, _breaker = provider(lambda request: httpx.Response(200, text="<html>"))
    with pytest.raises(ChargePending, match="unreadable"):
        await payments.charge(RECORD)
