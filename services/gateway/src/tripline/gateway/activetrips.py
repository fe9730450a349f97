"""Whether a request's sender is in an active trip, for ranking it (``shedding.Rank``).

Core keeps ``active-trip:<user_id>`` in Redis while a trip of the user's is requested,
accepted, arrived or in progress (:func:`tripline.common.channels.active_trip_key`). The gateway
asks only for requests that shedding would refuse as browsing, so the question is asked while
the platform is overloaded: it must cost next to nothing and never hold a request up.

- A local cache answers for ``ttl_s`` (5 s by default) per user, either answer: a trip that
  began or ended a moment ago is ranked by its old state for at most that long.
- One look-up per user at a time: concurrent requests of one user share it.
- A look-up that has not answered within ``wait_s`` (50 ms by default), or that fails in any
  way, counts as "not in a trip": ranking is a refinement, and a slow or absent Redis must cost
  a request at most that wait. After a failure nobody asks for ``ttl_s``: while Redis is away
  every request is answered at once instead of each waiting out its own look-up.
- At most ``max_entries`` users are remembered; past that the oldest entries go first.

The Redis call is injected (``fetch``); the clock too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal

from tripline.common.logs import get_logger

log = get_logger(__name__)

Outcome = Literal["active", "inactive", "failed"]
DEFAULT_TTL_S: Final = 5.0
DEFAULT_WAIT_S: Final = 0.05
DEFAULT_MAX_ENTRIES: Final = 100_000


class ActiveTrips:
    """Answers :meth:`is_active` from the cache or one bounded look-up; never raises for a
    failed look-up. ``on_lookup(outcome)`` is told how every look-up (not cache hit) ended."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[bool]],
        *,
        ttl_s: float = DEFAULT_TTL_S,
        wait_s: float = DEFAULT_WAIT_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[Outcome], None] | None = None,
    ) -> None:
        for name, value in (("ttl_s", ttl_s), ("wait_s", wait_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._wait_s = wait_s
        self._max_entries = max_entries
        self._clock = clock
        self._on_lookup = on_lookup
        # user -> (expires at, active); insertion order is age order, oldest first.
        self._cache: dict[str, tuple[float, bool]] = {}
        self._pending: dict[str, asyncio.Task[bool]] = {}
        self._paused_until = -math.inf

    def cached(self, user_id: str) -> bool | None:
        """The remembered answer for ``user_id``, or None when there is none or it expired."""
        entry = self._cache.get(user_id)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._cache[user_id]
            return None
        return entry[1]

    async def is_active(self, user_id: str) -> bool:
        """Whether ``user_id`` is a party of an active trip: from the cache, else from one
        look-up that waits at most ``wait_s``; False when the look-up fails, times out, or
        Redis failed within the last ``ttl_s``."""
        known = self.cached(user_id)
        if known is not None:
            return known
        if self._clock() < self._paused_until:
            return False
        task = self._pending.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._look_up(user_id))
            self._pending[user_id] = task
            task.add_done_callback(lambda _: self._pending.pop(user_id, None))
        # Shielded: one caller cancelled (its client left) does not cancel the others' answer.
        return await asyncio.shield(task)

    async def _look_up(self, user_id: str) -> bool:
        try:
            async with asyncio.timeout(self._wait_s):
                active = bool(await self._fetch(user_id))
        except Exception as exc:  # noqa: BLE001 - any failure ranks the request as browsing
            self._failed(exc)
            return False
        self._remember(user_id, active)
        if self._on_lookup is not None:
            self._on_lookup("active" if active else "inactive")
        return active

    def _failed(self, exc: Exception) -> None:
        now = self._clock()
        if now >= self._paused_until:
            # Once per pause, not once per request: Redis being away is one event.
            log.warning(
                "active trip look-up failed; ranking as browsing",
                error=repr(exc),
                pause_s=self._ttl_s,
            )
        self._paused_until = now + self._ttl_s
        if self._on_lookup is not None:
            self._on_lookup("failed")

    def _remember(self, user_id: str, active: bool) -> None:
        cache = self._cache
        cache.pop(user_id, None)
        cache[user_id] = (self._clock() + self._ttl_s, active)
        while len(cache) > self._max_entries:
            del cache[next(iter(cache))]
