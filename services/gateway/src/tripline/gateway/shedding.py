"""Adaptive load shedding: which requests the gateway refuses when it is overloaded.

The signal is the event loop's scheduling lag. A sampler (``loadmonitor.LoopLagMonitor``) asks to
be woken every ``sample_interval_s`` and measures how late it actually wakes. The gateway runs on
one thread, so that lateness is the time every ready callback (an accepted connection, a parsed
request, an upstream response) waits before it runs: the *sojourn time* of CoDel, measured without
tagging requests.

As in CoDel, the controller reacts to the **minimum** lag over a sliding ``interval_s``: a burst
lifts the maximum and leaves the minimum low, and drains by itself; only a standing queue, work
arriving faster than the loop can run it, lifts the minimum. Once ``interval_s`` has passed since
the last decision, the next sample decides on the minimum over the ``interval_s`` that ends at
that sample:

- above ``target_s``: the level rises one step (at most ``MAX_LEVEL``);
- below ``target_s``: the level falls one step (at least 0);
- equal: the level holds.

One step per interval both ways is the hysteresis: the level neither jumps to refusing everything
on the first bad interval nor flaps back on the first good one.

Levels: 0 admits everything, 1 refuses ``LOW``, 2 refuses ``LOW`` and ``NORMAL``. ``CRITICAL``
(SOS, live tracking, ``/health``) is admitted at every level, so low is always refused before
normal and critical never is.

Ranks refine priorities by who asks (:class:`Rank`, lowest first): ``LOW``; ``BROWSING``, a
``NORMAL`` request from a user in no active trip; ``IN_TRIP``, a ``NORMAL`` request from a rider
or driver of a trip that has not ended; ``CRITICAL``. Trip state lifts only ``NORMAL``: analytics
stay ``LOW`` whoever sends them, and ``CRITICAL`` has nowhere higher to go. This controller
refuses ``BROWSING`` from level 2 on, as it refuses ``NORMAL``; ``IN_TRIP`` only at level 2 while
the standing lag (the minimum over the interval) is still ``in_trip_lag_factor`` times the target
or more: refusing all browsing did not bring the loop back, and a loop that late delays every
request, critical ones included. The upstream limits (``concurrency``) apply the same ranks.

Parameters (``SheddingConfig``):

- ``target_s`` = 0.025: the standing wait tolerated before shedding. A healthy loop wakes its
  timers within a few milliseconds (uvloop's timers have millisecond resolution); 25 ms of wait
  that never drains is well above that noise and still far below what a client notices.
- ``interval_s`` = 0.5: how long the lag must stay above target before the level rises, and
  below it before it falls; a burst shorter than this is absorbed, not shed. Recovery from the
  top level takes two intervals.
- ``sample_interval_s`` = 0.02: how often the loop is sampled, about 25 samples per interval;
  an interval must hold at least two, or one late wake-up would count as a standing queue.
- ``max_retry_after_s`` = 5: a shed request's ``Retry-After`` is a whole number of seconds drawn
  uniformly from 1 to this, so refused clients do not all come back in the same second.
- ``in_trip_lag_factor`` = 4: at level 2, ``IN_TRIP`` is refused once the standing lag reaches
  this many targets (100 ms by default), a loop that late no request escapes.

A loop blocked for longer than ``interval_s`` cannot run the sampler at all. The sample that
finally runs carries the whole stall as its lag and is then the only one in the sliding
interval, so it alone decides and the level rises: silence is not mistaken for calm. The level
moves only when a sample arrives; the monitor must run for as long as requests are admitted.

Pure: no I/O; time comes from the injected ``clock`` and Retry-After jitter from the injected
``rng``.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final


class Priority(StrEnum):
    CRITICAL = "critical"
    NORMAL = "normal"
    LOW = "low"


class Rank(IntEnum):
    """Who is refused first, lowest first: a priority refined by the sender's trip state."""

    LOW = 0
    BROWSING = 1
    IN_TRIP = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The rank's name for metrics and logs: ``low``, ``browsing``, ``in_trip``..."""
        return self.name.lower()


def rank_of(priority: Priority, *, in_trip: bool = False) -> Rank:
    """The rank of a request of ``priority``; ``in_trip`` (the sender is a party of an active
    trip) lifts ``NORMAL`` from ``BROWSING`` to ``IN_TRIP`` and changes no other priority."""
    if priority is Priority.CRITICAL:
        return Rank.CRITICAL
    if priority is Priority.LOW:
        return Rank.LOW
    return Rank.IN_TRIP if in_trip else Rank.BROWSING


MAX_LEVEL: Final = 2

# The lowest level at which each priority is refused; CRITICAL has none, it is never refused.
_REFUSED_FROM_LEVEL: Final[Mapping[Priority, int]] = {Priority.LOW: 1, Priority.NORMAL: 2}


def _require_positive_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")


@dataclass(frozen=True)
class SheddingConfig:
    """The controller's parameters (see the module docstring); raises ValueError when invalid."""

    target_s: float = 0.025
    interval_s: float = 0.5
    sample_interval_s: float = 0.02
    max_retry_after_s: int = 5
    in_trip_lag_factor: float = 4.0

    def __post_init__(self) -> None:
        _require_positive_seconds("target_s", self.target_s)
        _require_positive_seconds("interval_s", self.interval_s)
        _require_positive_seconds("sample_interval_s", self.sample_interval_s)
        if 2 * self.sample_interval_s > self.interval_s:
            raise ValueError(
                f"interval_s ({self.interval_s}) must hold at least two samples of "
                f"sample_interval_s ({self.sample_interval_s})"
            )
        if self.max_retry_after_s < 1:
            raise ValueError(f"max_retry_after_s must be at least 1, got {self.max_retry_after_s}")
        if not (math.isfinite(self.in_trip_lag_factor) and self.in_trip_lag_factor >= 1):
            raise ValueError(
                f"in_trip_lag_factor must be a finite number of at least 1, "
                f"got {self.in_trip_lag_factor!r}"
            )


DEFAULT_CONFIG: Final = SheddingConfig()


class LoadShedder:
    """Turns event-loop lag samples into a shedding level and admission decisions.

    ``on_level_change(old, new)`` is called after every change of level, from ``observe``.
    """

    def __init__(
        self,
        config: SheddingConfig = DEFAULT_CONFIG,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_level_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        # Jitter to spread retries, not a secret.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._on_level_change = on_level_change
        self._level = 0
        # Samples of the last interval_s as (time, lag), oldest first. A sample that a newer one
        # matches or undercuts can never be the minimum again and is dropped, so lags increase
        # along the deque and its first entry is the window's minimum.
        self._window: deque[tuple[float, float]] = deque()
        # The first interval starts at the first sample: the time before the sampler ran is
        # not a stall.
        self._interval_start: float | None = None

    @property
    def level(self) -> int:
        """0 admits all, 1 refuses LOW, 2 refuses LOW and NORMAL."""
        return self._level

    def observe(self, lag_s: float) -> None:
        """Record one lag sample taken at ``clock()``; once ``interval_s`` has passed since the
        last decision, move the level at most one step. Raises ValueError for a negative or NaN
        lag."""
        if not lag_s >= 0.0:
            raise ValueError(f"lag must be a non-negative number of seconds, got {lag_s!r}")
        now = self._clock()
        interval_s = self._config.interval_s
        window = self._window
        while window and window[0][0] <= now - interval_s:
            window.popleft()
        while window and window[-1][1] >= lag_s:
            window.pop()
        window.append((now, lag_s))
        if self._interval_start is None:
            self._interval_start = now
        elif now - self._interval_start >= interval_s:
            self._interval_start = now
            self._decide(window[0][1])

    def _decide(self, min_lag_s: float) -> None:
        old = self._level
        if min_lag_s > self._config.target_s:
            new = min(old + 1, MAX_LEVEL)
        elif min_lag_s < self._config.target_s:
            new = max(old - 1, 0)
        else:
            return
        if new == old:
            return
        self._level = new
        if self._on_level_change is not None:
            self._on_level_change(old, new)

    def admit(self, priority: Priority) -> bool:
        """Whether a request of ``priority`` is admitted at the current level: CRITICAL always,
        NORMAL below level 2, LOW below level 1."""
        refused_from = _REFUSED_FROM_LEVEL.get(priority)
        return refused_from is None or self._level < refused_from

    def admit_rank(self, rank: Rank) -> bool:
        """Whether a request of ``rank`` is admitted now: as :meth:`admit` for its priority,
        except that ``IN_TRIP`` passes level 2 while the standing lag stays below
        ``in_trip_lag_factor`` times the target."""
        if rank is Rank.CRITICAL:
            return True
        if rank is Rank.LOW:
            return self._level < _REFUSED_FROM_LEVEL[Priority.LOW]
        if rank is Rank.BROWSING or self._level < MAX_LEVEL:
            return self._level < _REFUSED_FROM_LEVEL[Priority.NORMAL]
        standing_lag_s = self._window[0][1] if self._window else 0.0
        return standing_lag_s < self._config.in_trip_lag_factor * self._config.target_s

    def retry_after_s(self) -> int:
        """A Retry-After for a shed request: whole seconds, uniform in 1..max_retry_after_s."""
        return self._rng.randint(1, self._config.max_retry_after_s)

    def snapshot(self) -> dict[str, float | int]:
        """The state for gauges and logs: ``level`` and ``min_lag_s``, the minimum lag over the
        ``interval_s`` ending at the latest sample (0.0 before any sample)."""
        return {"level": self._level, "min_lag_s": self._window[0][1] if self._window else 0.0}
