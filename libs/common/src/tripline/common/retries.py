"""How long to wait before a retry, and whether to retry at all.

:class:`Backoff` spreads retries out with "full jitter" exponential backoff, so clients that
failed together do not retry together. :class:`RetryBudget` caps retries at a fraction of the
traffic, so a struggling dependency is not buried under retries of requests it already failed.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.05
    cap_s: float = 2.0

    def __post_init__(self) -> None:
        if self.base_s <= 0:
            raise ValueError(f"base_s must be positive, got {self.base_s}")
        if self.cap_s <= 0:
            raise ValueError(f"cap_s must be positive, got {self.cap_s}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (the first retry is attempt 0).

        Returns a value drawn uniformly from ``[0, min(cap_s, base_s * 2**attempt)]``. Raises
        ``ValueError`` for a negative ``attempt``.
        """
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        try:
            ceiling = min(self.cap_s, math.ldexp(self.base_s, attempt))
        except OverflowError:
            # 2**attempt is beyond the float range, so the exponential is long past the cap.
            ceiling = self.cap_s
        return rng.uniform(0.0, ceiling)


@dataclass(slots=True)
class _Bucket:
    second: int
    requests: int = 0
    retries: int = 0


class RetryBudget:
    """Finagle/Linkerd-style: retries may add at most ``ratio`` of the recent request rate, plus
    ``min_per_s`` so low-traffic callers can still retry.

    Every first attempt calls :meth:`record_request`; every retry must first get ``True`` from
    :meth:`try_spend`. Both are counted in one-second buckets (by the clock's whole seconds) and
    forgotten once their bucket is more than ``ceil(window_s)`` seconds old.

    With ``W = window_s``, ``R = min_per_s * window_s``, and ``requests(a, b]`` and
    ``retries(a, b]`` counting what was recorded and allowed at clock times in ``(a, b]``, a
    retry asked for at time ``t``:

    * is refused unless, with it, ``retries(t - W, t] <= ratio * requests(t - ceil(W) - 1, t] + R``;
    * is allowed if, with it, ``retries(t - ceil(W) - 1, t] <= ratio * requests(t - W, t] + R``.

    So any span of ``W`` seconds holds at most ``ratio`` times the requests made from
    ``ceil(W) + 1`` seconds before it to its end, plus ``R``. Requests made before a span can pay
    for retries inside it, so nothing is promised against the span's own requests alone.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.1,
        min_per_s: float = 10.0,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0:
            raise ValueError(f"ratio must not be negative, got {ratio}")
        if min_per_s < 0:
            raise ValueError(f"min_per_s must not be negative, got {min_per_s}")
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.ratio = ratio
        self.reserve = min_per_s * window_s
        self._clock = clock
        # One bucket more than the window covers, so the buckets kept always span a full window
        # of retries behind the current time, however far into the current second it is.
        self._buckets_kept = math.ceil(window_s) + 1
        self._buckets: deque[_Bucket] = deque()
        self._requests = 0
        self._retries = 0

    def record_request(self) -> None:
        self._current_bucket().requests += 1
        self._requests += 1

    def try_spend(self) -> bool:
        """Return ``True`` and count the retry when one is allowed now, else ``False``."""
        bucket = self._current_bucket()
        if self._retries + 1 > self.ratio * self._requests + self.reserve:
            return False
        bucket.retries += 1
        self._retries += 1
        return True

    def _current_bucket(self) -> _Bucket:
        second = math.floor(self._clock())
        while self._buckets and self._buckets[0].second <= second - self._buckets_kept:
            expired = self._buckets.popleft()
            self._requests -= expired.requests
            self._retries -= expired.retries
        if not self._buckets or self._buckets[-1].second != second:
            self._buckets.append(_Bucket(second))
        return self._buckets[-1]
