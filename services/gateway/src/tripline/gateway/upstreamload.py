"""One upstream's load as admission sees it: its adaptive limit and its replicas' breakers.

:class:`UpstreamGuard` joins :class:`~tripline.gateway.concurrency.AdaptiveLimit` (requests in
flight, the limit, latency samples) with the proxy's circuit breakers of the upstream's
replicas: the share of replicas whose breaker is not open scales the limit's thresholds, and
none refuses every rank but ``CRITICAL`` at once (their answer would be ``circuit-open``
anyway, after authentication and rate limiting had been paid for). No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.gateway.concurrency import AdaptiveLimit
from tripline.gateway.shedding import Rank

# Why a request was shed: the gateway's own loop lag, the upstream's concurrency limit, or
# every replica's breaker open.
Cause = Literal["loop", "limit", "breaker"]


class Slot:
    """A request admitted to an upstream and counted in flight there until it ends.

    End it exactly once: :meth:`done` when an answer came (or the wait for it timed out: a
    sample of how slow the upstream is), :meth:`abandon` when it failed without one (refused or
    dropped connection, open breaker, cancellation). Ending it twice raises RuntimeError.
    """

    __slots__ = ("_ended", "_limit", "_route", "_started_at")

    def __init__(self, limit: AdaptiveLimit, route: str, started_at: float) -> None:
        self._limit = limit
        self._route = route
        self._started_at = started_at
        self._ended = False

    def done(self) -> None:
        self._end()
        self._limit.complete(self._route, self._started_at)

    def abandon(self) -> None:
        self._end()
        self._limit.abandon()

    def _end(self) -> None:
        if self._ended:
            raise RuntimeError("this request has already ended")
        self._ended = True


class UpstreamGuard:
    """Admission to one upstream (``name``) by rank; ``breakers`` are its replicas'."""

    def __init__(self, name: str, limit: AdaptiveLimit, breakers: Sequence[CircuitBreaker]) -> None:
        if not breakers:
            raise ValueError("an upstream has at least one replica, so one breaker")
        self.name = name
        self.limit = limit
        self._breakers = tuple(breakers)

    def available(self) -> float:
        """The share of replicas whose breaker is not open (half-open ones count)."""
        # Reading the state also moves a breaker whose time is up from open to half-open.
        usable = sum(1 for breaker in self._breakers if breaker.state is not BreakerState.OPEN)
        return usable / len(self._breakers)

    def refusal(self, rank: Rank) -> Cause | None:
        """Why a request of ``rank`` would be refused now, or None when it would pass;
        nothing is counted."""
        if rank is Rank.CRITICAL:
            return None
        available = self.available()
        if available == 0:
            return "breaker"
        return None if self.limit.admits(rank, available=available) else "limit"

    def enter(self, route: str, rank: Rank) -> Slot | Cause:
        """Admit a request of ``route`` and ``rank`` and count it in flight (a :class:`Slot`),
        or say why it is refused. ``CRITICAL`` is always admitted."""
        available = self.available()
        if rank is not Rank.CRITICAL and available == 0:
            return "breaker"
        started_at = self.limit.try_acquire(rank, available=available)
        if started_at is None:
            return "limit"
        return Slot(self.limit, route, started_at)

    def retry_after_s(self) -> float:
        """Seconds until the first open breaker lets a call through (for ``Retry-After``)."""
        return min(breaker.retry_after_s() for breaker in self._breakers)
