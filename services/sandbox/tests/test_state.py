from __future__ import annotations

import pytest

from tripline.common.errors import NotFound
from tripline.common.validation import validate
from tripline.sandbox.behaviour import Mode
from tripline.sandbox.notifications import NotificationRequest
from tripline.sandbox.payments import PaymentRequest
from tripline.sandbox.settings import SandboxSettings
from tripline.sandbox.state import Provider, SandboxState, provider_named


def test_providers_are_found_by_name() -> None:
    assert provider_named("payments") is Provider.PAYMENTS
    assert provider_named("notifications") is Provider.NOTIFICATIONS


def test_an_unknown_provider_is_not_found() -> None:
    with pytest.raises(NotFound, match="maps"):
        provider_named("maps")


def test_the_state_follows_the_settings() -> None:
    state = SandboxState.from_settings(SandboxSettings(max_records=3, max_hang_s=7))

    assert state.payments.max_hang_s == 7
    assert state.notifications.max_hang_s == 7


def test_the_snapshot_has_every_provider() -> None:
    state = SandboxState(max_records=10, max_hang_s=1)
    state.payments.configure(Mode.FAIL)

    snapshot = state.snapshot()

    assert set(snapshot) == {"payments", "notifications"}
    assert snapshot["payments"]["mode"] == "fail"
    assert snapshot["notifications"]["mode"] == "ok"


def test_reset_clears_modes_counters_and_records() -> None:
    state = SandboxState(max_records=10, max_hang_s=1)
    state.payments.configure(Mode.SLOW, 2)
    state.notifications.configure(Mode.FAIL)
    state.payments.counters.received = 4
    state.ledger.confirm(
        validate(
            PaymentRequest,
            {"amount_cents": 1, "currency": "EUR", "method": "card", "reference": "t"},
        )
    )
    state.outbox.accept(
        validate(NotificationRequest, {"to": "r", "channel": "sms", "message": "hi"})
    )

    state.reset()

    assert all(provider["mode"] == "ok" for provider in state.snapshot().values())
    assert state.payments.counters.received == 0
    assert len(state.ledger) == 0
    assert len(state.outbox) == 0
