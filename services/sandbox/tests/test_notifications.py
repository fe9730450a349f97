from __future__ import annotations

from typing import Any

import pytest

from tripline.common.errors import ValidationFailed
from tripline.common.validation import validate
from tripline.sandbox.idempotency import IdempotencyKeyReused
from tripline.sandbox.notifications import Channel, NotificationRequest, Outbox

VALID: dict[str, Any] = {"to": "rider-1", "channel": "push", "message": "Your driver is here"}


def message(**changes: Any) -> NotificationRequest:
    return validate(NotificationRequest, {**VALID, **changes})


def test_a_notification_is_accepted_and_kept() -> None:
    outbox = Outbox(10, clock=lambda: 60.0)

    notification, replayed = outbox.accept(message(reference="trip-1"))

    assert not replayed
    assert notification.id.startswith("ntf_")
    assert notification.as_dict() == {
        "id": notification.id,
        "status": "accepted",
        "to": "rider-1",
        "channel": "push",
        "message": "Your driver is here",
        "reference": "trip-1",
        "received_at": "1970-01-01T00:01:00+00:00",
    }
    assert outbox.sent() == [notification]


def test_the_same_key_and_body_replay_the_first_notification() -> None:
    outbox = Outbox(10)
    first, _ = outbox.accept(message(), "key-1")

    again, replayed = outbox.accept(message(), "key-1")

    assert replayed
    assert again == first
    assert len(outbox) == 1


def test_the_same_key_with_another_body_is_a_conflict() -> None:
    outbox = Outbox(10)
    outbox.accept(message(), "key-1")

    with pytest.raises(IdempotencyKeyReused):
        outbox.accept(message(channel="sms"), "key-1")


def test_sent_lists_oldest_first_and_filters_by_recipient() -> None:
    outbox = Outbox(10)
    first, _ = outbox.accept(message(to="rider-1", message="one"))
    outbox.accept(message(to="driver-7", message="two"))
    third, _ = outbox.accept(message(to="rider-1", message="three"))

    assert [item.message for item in outbox.sent()] == ["one", "two", "three"]
    assert outbox.sent("rider-1") == [first, third]
    assert outbox.sent("nobody") == []


def test_only_the_most_recent_notifications_are_kept() -> None:
    outbox = Outbox(2)
    for number in range(3):
        outbox.accept(message(message=f"message {number}"))

    assert [item.message for item in outbox.sent()] == ["message 1", "message 2"]


def test_clear_forgets_notifications_and_keys() -> None:
    outbox = Outbox(10)
    outbox.accept(message(), "key-1")

    outbox.clear()

    assert outbox.sent() == []
    assert not outbox.accept(message(), "key-1")[1]


def test_every_channel_is_accepted() -> None:
    for channel in Channel:
        assert message(channel=channel.value).channel is channel


@pytest.mark.parametrize(
    "changes",
    [
        {"channel": "pigeon"},
        {"message": ""},
        {"message": "x" * 1001},
        {"to": ""},
        {"reference": ""},
        {"surprise": 1},
    ],
)
def test_a_bad_notification_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        message(**changes)


def test_a_message_of_exactly_1000_characters_is_accepted() -> None:
    assert len(message(message="x" * 1000).message) == 1000
