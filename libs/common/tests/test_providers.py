from __future__ import annotations

import pytest

from tripline.common.providers import AnswerKind, classify, payment_charge, payment_key


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, AnswerKind.DONE),
        (201, AnswerKind.DONE),
        (202, AnswerKind.DONE),
        (500, AnswerKind.TRANSIENT),
        (503, AnswerKind.TRANSIENT),
        (429, AnswerKind.TRANSIENT),
        (408, AnswerKind.TRANSIENT),
        (400, AnswerKind.REFUSED),
        (402, AnswerKind.REFUSED),
        (404, AnswerKind.REFUSED),
        (409, AnswerKind.REFUSED),
        (422, AnswerKind.REFUSED),
        (302, AnswerKind.REFUSED),
    ],
)
def test_only_server_errors_and_throttling_are_worth_retrying(
    status: int, kind: AnswerKind
) -> None:
    assert classify(status) is kind


def test_each_attempt_of_a_payment_has_its_own_key_and_the_charge_names_the_payment() -> None:
    record = {"_id": "p1", "attempt": 1, "amount_cents": 1250, "currency": "EUR", "method": "card"}
    second = {**record, "attempt": 2}
    assert payment_key(record) == payment_key(dict(record))
    assert payment_key(record) != payment_key(second)
    assert payment_charge(record) == {
        "amount_cents": 1250,
        "currency": "EUR",
        "method": "card",
        "reference": "p1",
    }
