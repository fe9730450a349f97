"""Backoff arithmetic, apart from any I/O: how long to wait before the next attempt.

Exponential backoff with full jitter (a uniform draw between zero and the exponential ceiling)
spreads a fleet of clients that failed together, so they do not come back in lockstep. The
server's ``Retry-After`` is a floor: the SDK never returns sooner than it was told to. A wait
longer than the cap is never taken inside a call; the call fails instead, carrying the wait.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Waits of ``uniform(0, min(cap_s, base_s * multiplier ** (attempt - 1)))`` seconds."""

    base_s: float = 0.5
    cap_s: float = 20.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.cap_s >= self.base_s and self.multiplier >= 1):
            raise ValueError("need 0 < base_s <= cap_s and multiplier >= 1")

    def capped(self, cap_s: float) -> Backoff:
        """The same policy with a different longest wait (never below ``base_s``)."""
        return Backoff(
            base_s=self.base_s, cap_s=max(cap_s, self.base_s), multiplier=self.multiplier
        )

    def ceiling(self, attempt: int) -> float:
        """The largest wait before retry number ``attempt`` (1 for the first retry)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        # The exponent is bounded so a long outage cannot overflow the float.
        exponent = min(attempt - 1, 64)
        return min(self.cap_s, self.base_s * self.multiplier**exponent)

    def delay(
        self,
        attempt: int,
        *,
        rand: Callable[[], float],
        retry_after: float | None = None,
    ) -> float | None:
        """The wait before retry number ``attempt``, or ``None`` when the server asked for a
        wait longer than the cap (the caller must then give up and report ``retry_after``).

        ``rand`` returns a float in [0, 1). The result is never above ``cap_s`` and never
        below ``retry_after``.
        """
        if retry_after is not None and retry_after > self.cap_s:
            return None
        return max(self.jitter(attempt, rand=rand), retry_after or 0.0)

    def jitter(self, attempt: int, *, rand: Callable[[], float]) -> float:
        """A full-jitter draw for retry number ``attempt``: ``rand() * ceiling(attempt)``."""
        return rand() * self.ceiling(attempt)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), given the
    wall-clock time ``now``; ``None`` when absent or unreadable. Never negative."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
