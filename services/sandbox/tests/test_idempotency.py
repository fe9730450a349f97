from __future__ import annotations

import pytest

from tripline.common.errors import ValidationFailed
from tripline.sandbox.idempotency import (
    MAX_KEY_LENGTH,
    IdempotencyKeyReused,
    Replays,
    idempotency_key,
)


def test_a_request_without_the_header_has_no_key() -> None:
    assert idempotency_key({}) is None


def test_the_key_is_read_and_trimmed() -> None:
    assert idempotency_key({"idempotency-key": "  trip-42  "}) == "trip-42"


@pytest.mark.parametrize("value", ["", "   ", "k" * (MAX_KEY_LENGTH + 1)])
def test_a_blank_or_overlong_key_is_rejected(value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        idempotency_key({"idempotency-key": value})
    assert caught.value.extra["errors"][0]["loc"] == "header.Idempotency-Key"


def test_a_new_key_recalls_nothing() -> None:
    replays: Replays[str] = Replays(10)

    assert replays.recall("a", {"amount": 1}) is None


def test_the_same_key_and_request_recall_the_first_record() -> None:
    replays: Replays[str] = Replays(10)
    replays.remember("a", {"amount": 1}, "first")

    assert replays.recall("a", {"amount": 1}) == "first"


def test_the_same_key_with_another_request_is_a_conflict() -> None:
    replays: Replays[str] = Replays(10)
    replays.remember("a", {"amount": 1}, "first")

    with pytest.raises(IdempotencyKeyReused) as caught:
        replays.recall("a", {"amount": 2})
    assert caught.value.status == 409


def test_only_the_most_recent_keys_are_kept() -> None:
    replays: Replays[int] = Replays(2)
    for number in range(3):
        replays.remember(f"key-{number}", {}, number)

    assert len(replays) == 2
    assert replays.recall("key-0", {}) is None
    assert replays.recall("key-2", {}) == 2


def test_clear_forgets_every_key() -> None:
    replays: Replays[int] = Replays(2)
    replays.remember("a", {}, 1)

    replays.clear()

    assert replays.recall("a", {}) is None
