"""The notification provider's outbox: every message is accepted and kept for inspection."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tripline.sandbox.idempotency import Replays


class Channel(StrEnum):
    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"


class NotificationRequest(BaseModel):
    """Body of ``POST /v1/notifications``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str = Field(min_length=1, max_length=256)
    channel: Channel
    message: str = Field(min_length=1, max_length=1000)
    reference: str | None = Field(default=None, min_length=1, max_length=128)


class NotificationQuery(BaseModel):
    """Query of ``GET /v1/notifications``; without ``to`` every recipient is listed."""

    to: str | None = Field(default=None, min_length=1, max_length=256)


@dataclass(frozen=True)
class Notification:
    id: str
    to: str
    channel: Channel
    message: str
    reference: str | None
    received_at: float
    status: str = "accepted"

    def as_dict(self) -> dict[str, Any]:
        """The notification as received, with ``received_at`` in ISO 8601 UTC."""
        return {
            "id": self.id,
            "status": self.status,
            "to": self.to,
            "channel": self.channel.value,
            "message": self.message,
            "reference": self.reference,
            "received_at": datetime.fromtimestamp(self.received_at, UTC).isoformat(),
        }


class Outbox:
    """The most recent ``capacity`` notifications, oldest first, and their idempotency keys."""

    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: deque[Notification] = deque(maxlen=capacity)
        self._replays: Replays[Notification] = Replays(capacity)

    def __len__(self) -> int:
        return len(self._items)

    def accept(
        self, request: NotificationRequest, key: str | None = None
    ) -> tuple[Notification, bool]:
        """Accept a notification; returns it and whether it is a replay of an earlier ``key``.

        Raises :class:`IdempotencyKeyReused` when ``key`` was used for a different request.
        """
        fingerprint = request.model_dump(mode="json")
        if key is not None:
            earlier = self._replays.recall(key, fingerprint)
            if earlier is not None:
                return earlier, True
        notification = Notification(
            id=f"ntf_{uuid.uuid4().hex}",
            to=request.to,
            channel=request.channel,
            message=request.message,
            reference=request.reference,
            received_at=self._clock(),
        )
        self._items.append(notification)
        if key is not None:
            self._replays.remember(key, fingerprint, notification)
        return notification, False

    def sent(self, to: str | None = None) -> list[Notification]:
        """Notifications still kept, oldest first; only those addressed to ``to`` if given."""
        return [item for item in self._items if to is None or item.to == to]

    def clear(self) -> None:
        self._items.clear()
        self._replays.clear()
