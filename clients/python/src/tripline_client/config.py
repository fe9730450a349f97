"""The SDK's knobs, with defaults for a phone on an ordinary mobile network."""

from __future__ import annotations

from dataclasses import dataclass, field

from tripline_client.backoff import Backoff
from tripline_client.outbox import MAX_AGE_S, MAX_ATTEMPTS


@dataclass(frozen=True)
class ClientConfig:
    """How patient the client is. Every field has a default; override what your app needs."""

    timeout_s: float = 10.0
    """Each attempt's timeout (connect, send and answer)."""
    slow_call_timeout_s: float = 20.0
    """The same for a payment and an upload's completion, to which the gateway gives its
    service 15 s: a shorter wait would give up on calls that succeed."""
    max_retries: int = 3
    """Retries of one call after its first attempt (network errors, 429, 502, 503, 504)."""
    backoff: Backoff = field(default_factory=Backoff)
    """Waits between a call's retries; the server's ``Retry-After`` is the floor."""
    probe_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=1.0, cap_s=15.0))
    """Waits between probes of ``GET /health`` while the gateway is unreachable, and between
    replays of the offline queue while the platform refuses them for now."""
    background_probe_cap_s: float = 120.0
    """The probe's and the replay's longest wait in background mode."""
    action_wait_s: float = 15.0
    """How long a critical action's call waits for its answer before returning it as queued
    (it is on disk already and goes out when it can)."""
    poll_interval_s: float = 2.0
    """Between two looks of a polling helper (:meth:`Tripline.watch_upload`)."""
    background_poll_interval_s: float = 30.0
    """The same in background mode."""
    subscription_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=15.0))
    """Waits between a trip subscription's reconnects."""
    retry_budget_k: float = 2.0
    """Adaptive throttling's multiplier: retries stop when failures outnumber
    ``k`` times the accepted calls (:mod:`tripline_client.budget`)."""
    max_action_attempts: int = MAX_ATTEMPTS
    """500 answers in a row after which a queued action is given up and reported failed
    (outages never count: see :class:`tripline_client.outbox.Outbox`)."""
    max_action_age_s: float = MAX_AGE_S
    """Age after which a queued action not yet delivered is given up (the platform remembers
    idempotency keys for a day)."""

    def __post_init__(self) -> None:
        if (
            self.timeout_s <= 0
            or self.slow_call_timeout_s <= 0
            or self.action_wait_s < 0
            or self.max_retries < 0
        ):
            raise ValueError(
                "timeout_s must be positive, action_wait_s and max_retries not negative"
            )
        if self.poll_interval_s <= 0 or self.background_poll_interval_s <= 0:
            raise ValueError("poll intervals must be positive")
