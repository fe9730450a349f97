"""Per-upstream adaptive concurrency limits: shedding that sees the upstreams.

The gateway's own loop lag (``shedding``) cannot see an upstream that is the bottleneck: a
gateway forwarding to a saturated core has an idle loop while every request waits in core.
Measured: a flood beyond capacity got 1,337 answers a second, all 2xx, nothing shed, and an
SOS waited 2.5 s at p99 behind the flood. What the gateway does see is, per upstream, how many
requests it has in flight there and how long each takes. So each upstream gets a concurrency
limit, adapted to that latency, and requests are refused by rank against it.

**Signal: queueing delay, as in CoDel.** A request's latency is its route's own no-load time
plus whatever it waited in the upstream (its event loop, its database pool). The no-load time
(``baseline``) is the fastest latency seen for the route over the last ``baseline_window_s``
(TCP Vegas' and BBR's minimum RTT, kept per route because a cached profile read and a payment
differ by orders of magnitude); the sample's *queueing delay* is its latency minus that
baseline. A queue inside the upstream adds the same wait to every route, so delays of
different routes are comparable where raw latencies are not, and one target serves them all.
The baseline is the minimum over two halves of the window (the older half forgotten at each
turn), so a route that became slower for good is learnt again within one window.

**Control: a multiplicative decrease on the median, an additive increase, only when in use.**
Every ``interval_s``, once at least ``min_samples`` requests have completed, the interval
decides. The limit moves only if the interval's peak of requests in flight reached the point
where ``LOW`` is refused, i.e. the limit was pressed (Netflix's Gradient2 holds an
"app-limited" limit the same way). A limit nobody presses is not what makes answers slow: a
machine starved by other work, or one slow dependency under light traffic, must not shrink it
to where it sheds requests that cost the upstream little; nor must an idle hour grow it to
``max_limit`` for the next flood to meet. A flood, or answers slow enough that requests pile up
in flight (Little's law: at 40 a second, answers of 1.25 s hold 50), presses it. Then the
median queueing delay decides (the median: a burst or one slow request does not move it, a
standing queue does):

- above ``target_s``: the limit is multiplied by ``target / delay``, kept between 0.5 and 0.9,
  a gradient as in Netflix's concurrency-limits: twice the target halves it, a little above
  cuts 10 %;
- otherwise the limit grows by its square root (fast from small limits, gentle at large ones).

The limit stays in ``[min_limit, max_limit]``. A hung upstream completes nothing and so moves
no limit; its requests in flight reach the limit, and that alone refuses more.

**Admission by rank** (:class:`~tripline.gateway.shedding.Rank`). Every request forwarded counts
as in flight until its answer, ``CRITICAL`` ones included (they load the upstream like any
other). A request of rank ``r`` is admitted while ``in_flight < share[r] * limit * available``:
``LOW`` at ``low_share`` of the limit (0.5), ``BROWSING`` at the limit, ``IN_TRIP`` at
``in_trip_share`` of it (1.25), ``CRITICAL`` always. So under a flood low is refused first,
browsing next, trip parties last, and critical requests meet a queue the controller keeps near
``target_s``. ``available`` is the share of the upstream's replicas whose breaker is not open:
one replica of two out halves every threshold at once, without waiting for latency to show it;
none (0) refuses every rank but ``CRITICAL``.

Parameters (``LimitConfig``; the gateway's settings give them):

- ``target_s`` = 0.05: the standing wait tolerated inside an upstream. Well under the critical
  SLA (p95 250 ms, p99 500 ms) that a critical request meeting that queue must keep, and above
  the natural spread of one route's latency on a healthy stack.
- ``interval_s`` = 0.1 and ``min_samples`` = 10: decisions as often as CoDel's interval, each on
  at least ten answers, so a limit falls from 100 to 5 within about half a second of a flood.
- ``initial_limit`` = 100, ``min_limit`` = 5, ``max_limit`` = 1000: a new gateway admits a
  hundred requests in flight per upstream before anything has been measured (far more than a
  healthy upstream needs: 1,000 answers a second at 20 ms is 20); at least 5 so that answers
  keep coming to measure recovery by; at most 1000, a ceiling on growth in the order of what the
  proxy's pools let through (500 connections per replica).
- ``baseline_window_s`` = 60: how long a route's fastest answer is remembered.
- ``low_share`` = 0.5 and ``in_trip_share`` = 1.25: the thresholds of ``LOW`` and ``IN_TRIP``
  as shares of the limit.

Pure: no I/O; time comes from the injected ``clock``. One event loop, no threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from tripline.gateway.shedding import Rank

# A decision cuts the limit by at least this much and at most by half: the gradient's bounds.
SLOWEST_DECREASE: Final = 0.9
FASTEST_DECREASE: Final = 0.5
# Samples kept per interval: the median of the first ones is as good as that of all of them,
# and the sort stays cheap however busy the upstream is.
MAX_INTERVAL_SAMPLES: Final = 512


def _require_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive, finite number, got {value!r}")


@dataclass(frozen=True)
class LimitConfig:
    """The controller's parameters (see the module docstring); raises ValueError when invalid."""

    target_s: float = 0.05
    interval_s: float = 0.1
    min_samples: int = 10
    initial_limit: float = 100.0
    min_limit: float = 5.0
    max_limit: float = 1000.0
    baseline_window_s: float = 60.0
    low_share: float = 0.5
    in_trip_share: float = 1.25

    def __post_init__(self) -> None:
        for name in ("target_s", "interval_s", "baseline_window_s", "min_limit", "low_share"):
            _require_positive(name, getattr(self, name))
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if not self.min_limit <= self.initial_limit <= self.max_limit < math.inf:
            raise ValueError(
                "limits must satisfy min_limit <= initial_limit <= max_limit < inf, got "
                f"{self.min_limit}, {self.initial_limit}, {self.max_limit}"
            )
        if not self.low_share <= 1 <= self.in_trip_share < math.inf:
            raise ValueError(
                "shares must satisfy 0 < low_share <= 1 <= in_trip_share < inf, got "
                f"{self.low_share}, {self.in_trip_share}"
            )

    def shares(self) -> Mapping[Rank, float]:
        """The share of the limit up to which each rank but ``CRITICAL`` is admitted."""
        return {Rank.LOW: self.low_share, Rank.BROWSING: 1.0, Rank.IN_TRIP: self.in_trip_share}


DEFAULT_LIMIT_CONFIG: Final = LimitConfig()


class AdaptiveLimit:
    """One upstream's requests in flight, its concurrency limit, and admission by rank.

    Every admitted request must end in exactly one :meth:`complete` (it was answered, or timed
    out: its latency is a sample) or :meth:`abandon` (it failed without a latency worth
    learning from, or was cancelled). ``on_limit_change(old, new)`` is called after every
    change of the limit, from :meth:`complete`.
    """

    def __init__(
        self,
        config: LimitConfig = DEFAULT_LIMIT_CONFIG,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_limit_change: Callable[[float, float], None] | None = None,
    ) -> None:
        self._config = config
        self._shares = config.shares()
        self._clock = clock
        self._on_limit_change = on_limit_change
        self._limit = config.initial_limit
        self._in_flight = 0
        self._peak = 0
        self._delays: list[float] = []
        self._interval_start: float | None = None
        self._queue_delay_s = 0.0
        # The fastest latency per route in the current and the previous half of the baseline
        # window.
        self._fastest: dict[str, float] = {}
        self._fastest_before: dict[str, float] = {}
        self._half_start: float | None = None

    @property
    def limit(self) -> float:
        """The requests in flight up to which ``BROWSING`` is admitted, all replicas up."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet completed or abandoned, every rank counted."""
        return self._in_flight

    @property
    def queue_delay_s(self) -> float:
        """The median queueing delay of the last decided interval (0.0 before the first)."""
        return self._queue_delay_s

    def admits(self, rank: Rank, *, available: float = 1.0) -> bool:
        """Whether a request of ``rank`` would be admitted now (nothing is counted).

        ``available`` is the share of the upstream's replicas whose breaker is not open, in
        ``[0, 1]`` (ValueError otherwise). ``CRITICAL`` is always admitted."""
        if not 0.0 <= available <= 1.0:
            raise ValueError(f"available must be between 0 and 1, got {available!r}")
        if rank is Rank.CRITICAL:
            return True
        return self._in_flight < self._shares[rank] * self._limit * available

    def try_acquire(self, rank: Rank, *, available: float = 1.0) -> float | None:
        """Admit a request of ``rank`` as :meth:`admits` decides and count it in flight.

        Returns its start time, to hand to :meth:`complete`, or None when it is refused (and
        nothing is counted)."""
        if not self.admits(rank, available=available):
            return None
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        return self._clock()

    def abandon(self) -> None:
        """End an admitted request without a sample. RuntimeError when none is in flight."""
        self._release()

    def complete(self, route: str, started_at: float) -> None:
        """End an admitted request of ``route`` started at ``started_at`` (from
        :meth:`try_acquire`): its latency is a sample, and once ``interval_s`` and
        ``min_samples`` are reached the limit moves. RuntimeError when none is in flight."""
        self._release()
        now = self._clock()
        latency_s = max(0.0, now - started_at)
        self._turn_baseline_window(now)
        baseline_s = min(
            self._fastest.get(route, math.inf), self._fastest_before.get(route, math.inf)
        )
        # A route's first answer is its own baseline: no queue can be told from it yet.
        delay_s = max(0.0, latency_s - baseline_s) if math.isfinite(baseline_s) else 0.0
        if latency_s < self._fastest.get(route, math.inf):
            self._fastest[route] = latency_s
        if len(self._delays) < MAX_INTERVAL_SAMPLES:
            self._delays.append(delay_s)
        if self._interval_start is None:
            self._interval_start = now
        elif (
            now - self._interval_start >= self._config.interval_s
            and len(self._delays) >= self._config.min_samples
        ):
            self._decide(now)

    def snapshot(self) -> dict[str, float]:
        """The state for gauges and logs: ``limit``, ``in_flight``, ``queue_delay_s``."""
        return {
            "limit": self._limit,
            "in_flight": float(self._in_flight),
            "queue_delay_s": self._queue_delay_s,
        }

    def _release(self) -> None:
        if self._in_flight == 0:
            raise RuntimeError("a request ended that was never admitted")
        self._in_flight -= 1

    def _turn_baseline_window(self, now: float) -> None:
        half_s = self._config.baseline_window_s / 2
        if self._half_start is None:
            self._half_start = now
        elif now - self._half_start >= 2 * half_s:
            # Silent for a whole window: everything remembered is older than the window.
            self._fastest_before, self._fastest = {}, {}
            self._half_start = now
        elif now - self._half_start >= half_s:
            self._fastest_before, self._fastest = self._fastest, {}
            self._half_start = now

    def _decide(self, now: float) -> None:
        config = self._config
        delays = sorted(self._delays)
        median_s = delays[len(delays) // 2]
        self._queue_delay_s = median_s
        old = self._limit
        if self._peak < config.low_share * old:
            new = old
        elif median_s > config.target_s:
            factor = min(SLOWEST_DECREASE, max(FASTEST_DECREASE, config.target_s / median_s))
            new = max(config.min_limit, old * factor)
        else:
            new = min(config.max_limit, old + math.sqrt(old))
        self._delays.clear()
        self._interval_start = now
        self._peak = self._in_flight
        if new != old:
            self._limit = new
            if self._on_limit_change is not None:
                self._on_limit_change(old, new)
