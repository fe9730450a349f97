"""Everything one sandbox process holds: both providers' behaviour and records."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from tripline.common.errors import NotFound
from tripline.sandbox.behaviour import Behaviour
from tripline.sandbox.notifications import Outbox
from tripline.sandbox.payments import Ledger
from tripline.sandbox.settings import SandboxSettings


class Provider(StrEnum):
    PAYMENTS = "payments"
    NOTIFICATIONS = "notifications"


def provider_named(name: str) -> Provider:
    """Return the provider called ``name``; raises :class:`NotFound` for any other name."""
    try:
        return Provider(name)
    except ValueError:
        known = ", ".join(provider.value for provider in Provider)
        raise NotFound(f"there is no provider {name!r}; known providers: {known}") from None


class SandboxState:
    """In-memory state of both providers; created per app in its lifespan, never shared."""

    def __init__(
        self, *, max_records: int, max_hang_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.behaviours = {
            provider: Behaviour(provider.value, max_hang_s=max_hang_s) for provider in Provider
        }
        self.ledger = Ledger(max_records, clock=clock)
        self.outbox = Outbox(max_records, clock=clock)

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> SandboxState:
        return cls(max_records=settings.max_records, max_hang_s=settings.max_hang_s)

    @property
    def payments(self) -> Behaviour:
        return self.behaviours[Provider.PAYMENTS]

    @property
    def notifications(self) -> Behaviour:
        return self.behaviours[Provider.NOTIFICATIONS]

    def snapshot(self) -> dict[str, Any]:
        """Mode and counters of every provider, keyed by provider name."""
        return {provider.value: self.behaviours[provider].snapshot() for provider in Provider}

    def reset(self) -> None:
        """Every provider back to ``ok`` with zero counters and no records."""
        for behaviour in self.behaviours.values():
            behaviour.reset()
        self.ledger.clear()
        self.outbox.clear()

    def close(self) -> None:
        """Release every held request; called when the app stops."""
        for behaviour in self.behaviours.values():
            behaviour.close()
