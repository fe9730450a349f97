from __future__ import annotations

from typing import Any

import pytest

from tripline.common.errors import NotFound, ValidationFailed
from tripline.common.validation import validate
from tripline.sandbox.idempotency import IdempotencyKeyReused
from tripline.sandbox.payments import Ledger, PaymentRequest

VALID: dict[str, Any] = {
    "amount_cents": 1250,
    "currency": "EUR",
    "method": "card",
    "reference": "trip-1",
}


def order(**changes: Any) -> PaymentRequest:
    return validate(PaymentRequest, {**VALID, **changes})


def test_a_payment_is_confirmed_with_the_requested_details() -> None:
    ledger = Ledger(10, clock=lambda: 0.0)

    payment, replayed = ledger.confirm(order())

    assert not replayed
    assert payment.id.startswith("pay_")
    assert payment.as_dict() == {
        "id": payment.id,
        "status": "confirmed",
        "amount_cents": 1250,
        "currency": "EUR",
        "method": "card",
        "reference": "trip-1",
        "created_at": "1970-01-01T00:00:00+00:00",
    }
    assert ledger.get(payment.id) == payment


def test_without_a_key_every_request_is_a_new_payment() -> None:
    ledger = Ledger(10)

    first, _ = ledger.confirm(order())
    second, _ = ledger.confirm(order())

    assert first.id != second.id


def test_the_same_key_and_body_replay_the_first_payment() -> None:
    ledger = Ledger(10)
    first, _ = ledger.confirm(order(), "key-1")

    again, replayed = ledger.confirm(order(), "key-1")

    assert replayed
    assert again == first
    assert len(ledger) == 1


def test_the_same_key_with_another_body_is_a_conflict() -> None:
    ledger = Ledger(10)
    ledger.confirm(order(), "key-1")

    with pytest.raises(IdempotencyKeyReused):
        ledger.confirm(order(amount_cents=999), "key-1")


def test_an_unknown_payment_is_not_found() -> None:
    with pytest.raises(NotFound):
        Ledger(10).get("pay_missing")


def test_only_the_most_recent_payments_are_kept() -> None:
    ledger = Ledger(2)
    oldest, _ = ledger.confirm(order(), "key-0")
    ledger.confirm(order(reference="trip-2"))
    newest, _ = ledger.confirm(order(reference="trip-3"))

    assert len(ledger) == 2
    assert ledger.get(newest.id) == newest
    with pytest.raises(NotFound):
        ledger.get(oldest.id)


def test_clear_forgets_payments_and_keys() -> None:
    ledger = Ledger(10)
    first, _ = ledger.confirm(order(), "key-1")

    ledger.clear()

    again, replayed = ledger.confirm(order(), "key-1")
    assert not replayed
    assert again.id != first.id
    with pytest.raises(NotFound):
        ledger.get(first.id)


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_cents": 0},
        {"amount_cents": -5},
        {"amount_cents": "100"},
        {"amount_cents": 12.5},
        {"amount_cents": True},
        {"currency": "eur"},
        {"currency": "EURO"},
        {"method": ""},
        {"reference": ""},
        {"reference": "r" * 129},
        {"surprise": 1},
    ],
)
def test_a_bad_payment_request_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        order(**changes)


def test_every_missing_field_is_reported() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate(PaymentRequest, {})

    locations = {error["loc"] for error in caught.value.extra["errors"]}
    assert locations == {"amount_cents", "currency", "method", "reference"}
