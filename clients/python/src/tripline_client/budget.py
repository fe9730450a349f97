"""The client-side retry budget: adaptive throttling from Google's SRE book ("Handling
Overload", client-side throttling), applied to retries.

Each client counts, over the last ``window_s``, the attempts it sent (``requests``) and those
the platform accepted (``accepts``: any answer that is not an overload or outage signal). A
retry is sent with probability ``1 - p`` where

    p = max(0, (requests - k * accepts - grace) / (requests + 1))

While the platform answers, ``accepts`` keeps ``p`` at zero; when it stops answering, ``p``
climbs towards one and the fleet of apps stops multiplying the load by its retries. First
attempts are always sent: refusing them locally would turn a recovery into silence. ``grace``
lets a client that has just started (and so has accepted nothing yet) retry a blip or two.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RetryBudget:
    """Counts attempts and accepts in one-second buckets; ``allow_retry`` decides."""

    clock: Callable[[], float]
    rand: Callable[[], float]
    k: float = 2.0
    window_s: int = 120
    grace: int = 2
    _buckets: deque[list[int]] = field(default_factory=deque, init=False, repr=False)
    _requests: int = field(default=0, init=False)
    _accepts: int = field(default=0, init=False)

    def record(self, *, accepted: bool) -> None:
        """Count one attempt that was sent, and whether the platform accepted it."""
        bucket = self._bucket()
        bucket[1] += 1
        self._requests += 1
        if accepted:
            bucket[2] += 1
            self._accepts += 1

    def rejection_probability(self) -> float:
        """The chance, in [0, 1), that the next retry is not sent."""
        self._expire()
        excess = self._requests - self.k * self._accepts - self.grace
        return max(0.0, excess / (self._requests + 1))

    def allow_retry(self) -> bool:
        """Whether to send a retry now; the caller must not send it when this is False."""
        return self.rand() >= self.rejection_probability()

    def _bucket(self) -> list[int]:
        self._expire()
        second = int(self.clock())
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def _expire(self) -> None:
        oldest = int(self.clock()) - self.window_s
        while self._buckets and self._buckets[0][0] <= oldest:
            _, requests, accepts = self._buckets.popleft()
            self._requests -= requests
            self._accepts -= accepts
