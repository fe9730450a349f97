"""Rate-limit arithmetic: a sliding window of one-second buckets, with no I/O.

The contract says the limit holds in *every* window-long span, including one that straddles the
edge of a fixed window, and a refusal carries the true wait. The scheme here:

- Hits are counted per whole second: the bucket of a hit at ``now`` is ``floor(now)``.
- A decision at ``now`` with a window of ``W`` seconds counts the ``W + 1`` buckets
  ``floor(now) - W .. floor(now)``. They cover ``[floor(now) - W, now]``, a superset of the true
  window ``[now - W, now]``, so the count is never an underestimate and no ``W``-second span ever
  holds more than the limit. The price is being at most one second conservative.
- A request is admitted when ``count + 1 <= limit``; the caller then adds one to the current
  bucket.
- A refusal must wait until enough of the oldest hits have left. With ``need = count + 1 -
  limit``, walk the buckets oldest first summing their hits; the bucket ``b`` at which the sum
  reaches ``need`` stops being counted at ``b + W + 1``, so ``Retry-After`` is
  ``b + W + 1 - floor(now)`` whole seconds (the ceiling of the real wait, always at least 1).

Why not the alternatives:

- A fixed window, or GCRA (the "token bucket" of most libraries) with a burst equal to the limit,
  admits a full burst at the end of one window and another at the start of the next: up to twice
  the limit in one span. GCRA with a smaller burst refuses legitimate bursts instead.
- An exact sliding log (a sorted set of timestamps) stores one entry per admitted hit, up to
  ``limit`` per key (300 for the critical tier, times every active user). The buckets store at
  most ``W + 1`` small integers per key whatever the limit, which also keeps the Lua script's
  work per decision bounded.

:func:`decide` is the single definition of the arithmetic. :class:`LocalLimiter` applies it in
process (the fallback when Redis is unreachable, and tests); the Lua script in
:mod:`tripline.common.ratelimit_redis` implements the same rules inside Redis.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import accumulate

MAX_PLAIN_SUBJECT = 128
# Subjects outside this alphabet (or longer) are hashed. "#" is not in it, so a hashed subject
# can never equal a plain one.
PLAIN_SUBJECT = re.compile(r"[A-Za-z0-9:._@\[\]-]+")


class Tier(StrEnum):
    STANDARD = "standard"
    CRITICAL = "critical"
    UPLOAD = "upload"


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` requests in any ``window_s``-second span.

    Raises :class:`ValueError` when either number is below 1.
    """

    limit: int
    window_s: int = 60

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"a quota's limit must be at least 1, got {self.limit}")
        if self.window_s < 1:
            raise ValueError(f"a quota's window must be at least 1 s, got {self.window_s}")


class Source(StrEnum):
    """Who made a decision: the shared counters, this process alone, or nobody (admitted
    because the traffic is critical and the shared counters are out of reach)."""

    REDIS = "redis"
    LOCAL = "local"
    FAIL_OPEN = "fail-open"


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against its quota.

    ``remaining`` is what is left after this request (0 when refused). ``reset_s`` is the number
    of whole seconds until ``remaining`` next grows; for a refusal it equals ``retry_after_s``,
    the wait until a request would be admitted (0 when admitted).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int
    window_s: int
    source: Source = Source.REDIS


def limit_key(tier: Tier, subject: str) -> str:
    """The Redis key of ``subject``'s counters in ``tier``: ``rl:{tier}:{subject}``.

    ``subject`` is e.g. ``u:<token sub>`` or ``ip:<address>``. Any string is accepted: one that
    is empty, longer than 128 characters or outside ``[A-Za-z0-9:._@[]-]`` is replaced by ``#``
    and a 128-bit hash of it, so keys stay short, printable and encodable (a JWT ``sub`` may
    even hold a lone surrogate), and distinct subjects keep distinct keys.
    """
    if len(subject) > MAX_PLAIN_SUBJECT or not PLAIN_SUBJECT.fullmatch(subject):
        digest = hashlib.blake2b(subject.encode("utf-8", "surrogatepass"), digest_size=16)
        subject = "#" + digest.hexdigest()
    return f"rl:{tier}:{subject}"


def decide(buckets: Mapping[int, int], now: float, quota: Quota) -> Decision:
    """Decide one request at ``now`` (seconds) given ``buckets`` (second → hits).

    Buckets older than the window are ignored; buckets newer than ``now`` (a clock stepped back)
    still count, so a clock step never frees quota. The caller must add one to the bucket
    ``floor(now)`` when the decision is ``allowed``; nothing else changes.
    """
    current = math.floor(now)
    window = quota.window_s
    counted = sorted(
        (second, hits)
        for second, hits in buckets.items()
        if second >= current - window and hits > 0
    )
    count = sum(hits for _, hits in counted)
    if count + 1 <= quota.limit:
        oldest = min(counted[0][0], current) if counted else current
        return Decision(
            allowed=True,
            limit=quota.limit,
            remaining=quota.limit - count - 1,
            reset_s=oldest + window + 1 - current,
            retry_after_s=0,
            window_s=window,
        )
    # need <= count because limit >= 1, so the running totals always reach it.
    need = count + 1 - quota.limit
    totals = list(accumulate(hits for _, hits in counted))
    freed_by = counted[bisect_left(totals, need)][0]
    wait = freed_by + window + 1 - current
    return Decision(
        allowed=False,
        limit=quota.limit,
        remaining=0,
        reset_s=wait,
        retry_after_s=wait,
        window_s=window,
    )


def rate_limit_headers(tier: Tier, decision: Decision) -> list[tuple[bytes, bytes]]:
    """ASGI headers for ``decision`` (draft-ietf-httpapi-ratelimit-headers, structured fields).

    Always ``ratelimit-policy: "<tier>";q=<limit>;w=<window>`` and ``ratelimit:
    "<tier>";r=<remaining>;t=<reset>``; a refusal adds ``retry-after: <seconds>``.
    """
    headers = [
        (b"ratelimit-policy", f'"{tier}";q={decision.limit};w={decision.window_s}'.encode()),
        (b"ratelimit", f'"{tier}";r={decision.remaining};t={decision.reset_s}'.encode()),
    ]
    if not decision.allowed:
        headers.append((b"retry-after", str(decision.retry_after_s).encode()))
    return headers


class LocalLimiter:
    """The same arithmetic on counters in this process's memory.

    Only this process sees its counters: the Redis fallback gives it a share of each limit. At
    most ``max_keys`` keys are kept; the least recently used one is forgotten first, which can
    only make the limiter more permissive for that key.
    """

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, dict[int, int]] = OrderedDict()

    def hit(self, key: str, quota: Quota) -> Decision:
        """Decide one request on ``key`` now and count it when admitted (source ``LOCAL``)."""
        now = self._clock()
        current = math.floor(now)
        kept = self._keys.pop(key, {})
        buckets = {
            second: hits for second, hits in kept.items() if second >= current - quota.window_s
        }
        decision = decide(buckets, now, quota)
        if decision.allowed:
            buckets[current] = buckets.get(current, 0) + 1
        if buckets:
            self._keys[key] = buckets
            if len(self._keys) > self._max_keys:
                self._keys.popitem(last=False)
        return replace(decision, source=Source.LOCAL)
