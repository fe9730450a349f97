"""A circuit breaker: stop calling a dependency that keeps failing, then probe it carefully.

The core is sans-I/O: :meth:`CircuitBreaker.try_acquire` asks whether a call may be made and the
caller reports how it went, so the same breaker serves HTTP proxying, WebSockets or anything else.
:meth:`CircuitBreaker.call` wraps an ``async`` callable for the common case.

We keep our own rather than use a library: aiobreaker 1.2 mixes ``utcnow()`` and ``now()``, so its
remaining open time is wrong outside UTC, and lets every concurrent call through while half-open;
pybreaker does not support ``async def``.

The breaker is not thread-safe; it belongs to one event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from tripline.common.errors import CircuitOpen

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


BREAKER_STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
"""The number a gauge shows for each state (one scale for every breaker's metric)."""

# The window is kept as this many buckets: the rate is exact to a thirtieth of the window.
_BUCKETS = 30


def _any_exception(exc: BaseException) -> bool:
    return True


class FailureWindow:
    """Calls and failures over the last ``window_s`` seconds, in fixed buckets (pure)."""

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self._width = window_s / _BUCKETS
        # (bucket number, calls, failures), oldest first.
        self._buckets: deque[list[int]] = deque()

    def add(self, now: float, *, failed: bool) -> None:
        """Count one finished call at ``now``."""
        self._drop_before(now)
        bucket = int(now // self._width)
        if not self._buckets or self._buckets[-1][0] != bucket:
            self._buckets.append([bucket, 0, 0])
        self._buckets[-1][1] += 1
        self._buckets[-1][2] += int(failed)

    def totals(self, now: float) -> tuple[int, int]:
        """``(calls, failures)`` finished within the window that ends at ``now``."""
        self._drop_before(now)
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def clear(self) -> None:
        self._buckets.clear()

    def _drop_before(self, now: float) -> None:
        oldest = int(now // self._width) - _BUCKETS + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()


class CircuitBreaker:
    """Guards one dependency.

    * ``closed``: every call is admitted. It opens on whichever rule trips first:
      ``failure_threshold`` consecutive failures; with ``failure_rate``, at least that share of
      at least ``min_calls`` calls failing within the last ``window_s`` (a provider failing
      half its calls never fails 50 in a row); with ``open_on_timeout``, one call that timed
      out (:meth:`record_timeout`): a hung dependency costs its timeout once, not per call.
    * ``open``: every call is refused until ``reset_timeout_s`` has passed, then it is half-open.
      With ``reset_timeout_s=None`` no call is ever let through to probe: it stays open until
      its owner's own probe succeeds (:meth:`probe_succeeded`), so no request waits on a
      dependency that is still hung.
    * ``half_open``: at most ``half_open_max_calls`` calls are in flight at once; the first
      outcome decides: a success closes the breaker, a failure opens it for a fresh timeout.

    The breaker counts every admitted call until its outcome (or release) is recorded, whatever
    the state. Calls admitted before it opened therefore hold half-open slots until they finish,
    so half-open never has more than ``half_open_max_calls`` calls in flight against a dependency
    that is just recovering. Outcomes recorded while open change nothing but that count; an
    outcome recorded while half-open decides, whichever call it belongs to, since the breaker
    cannot tell a probe from an older call and either one just heard from the dependency.

    ``on_change(name, old, new)`` is called synchronously after every transition. Open becomes
    half-open lazily, so that transition is reported on the first look at the breaker after the
    timeout.
    """

    PROBE_WAIT_S = 1.0

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 50,
        reset_timeout_s: float | None = 30.0,
        half_open_max_calls: int = 1,
        failure_rate: float | None = None,
        min_calls: int = 20,
        window_s: float = 30.0,
        open_on_timeout: bool = False,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if reset_timeout_s is not None and reset_timeout_s <= 0:
            raise ValueError(f"reset_timeout_s must be positive, got {reset_timeout_s}")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate}")
        if min_calls < 1:
            raise ValueError(f"min_calls must be at least 1, got {min_calls}")
        if half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be at least 1, got {half_open_max_calls}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.open_on_timeout = open_on_timeout
        self._window = FailureWindow(window_s)
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._in_flight = 0

    @property
    def state(self) -> BreakerState:
        return self._state_at(self._clock())

    def retry_after_s(self) -> float:
        """Seconds until a call may be admitted again; ``0.0`` when one would be admitted now.

        While half-open with every slot taken the wait depends on calls still in flight; the
        answer is then ``reset_timeout_s``, the wait that follows if they fail. A breaker that
        waits for its owner's probe answers :attr:`PROBE_WAIT_S`, a guess.
        """
        now = self._clock()
        state = self._state_at(now)
        if state is BreakerState.OPEN:
            if self.reset_timeout_s is None:
                return self.PROBE_WAIT_S
            return self._opened_at + self.reset_timeout_s - now
        if state is BreakerState.HALF_OPEN and self._in_flight >= self.half_open_max_calls:
            return self.reset_timeout_s or self.PROBE_WAIT_S
        return 0.0

    def try_acquire(self) -> bool:
        """Ask to make one call.

        Returns ``True`` when the call may be made: the caller must then record exactly one of
        :meth:`record_success`, :meth:`record_failure` or :meth:`release` for it. Returns
        ``False`` when the call is refused; the caller must not make it and records nothing.
        """
        state = self.state
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN and self._in_flight >= self.half_open_max_calls:
            return False
        self._in_flight += 1
        return True

    def record_success(self) -> None:
        """Record that an admitted call succeeded.

        Raises ``RuntimeError`` when no admitted call is waiting for its outcome.
        """
        state = self._finish_call()
        if state is BreakerState.HALF_OPEN:
            self._move_to(BreakerState.CLOSED)
        elif state is BreakerState.CLOSED:
            self._failures = 0
            self._window.add(self._clock(), failed=False)

    def record_failure(self) -> None:
        """Record that an admitted call failed.

        Raises ``RuntimeError`` when no admitted call is waiting for its outcome.
        """
        self._fail(timed_out=False)

    def record_timeout(self) -> None:
        """Record that an admitted call failed by not answering in time; with
        ``open_on_timeout`` this alone opens the breaker.

        Raises ``RuntimeError`` when no admitted call is waiting for its outcome.
        """
        self._fail(timed_out=True)

    def trip(self) -> None:
        """Open now: the owner saw an outage no admitted call reported (a call it abandoned
        after its own deadline, say). An open breaker stays open, its wait unchanged."""
        if self.state is not BreakerState.OPEN:
            self._open()

    def probe_succeeded(self) -> None:
        """The owner's own probe reached the dependency: an open breaker closes at once."""
        if self._state is not BreakerState.CLOSED:
            self._move_to(BreakerState.CLOSED)

    def _fail(self, *, timed_out: bool) -> None:
        state = self._finish_call()
        if state is BreakerState.HALF_OPEN:
            self._open()
        elif state is BreakerState.CLOSED:
            now = self._clock()
            self._failures += 1
            self._window.add(now, failed=True)
            if self._trips(now, timed_out=timed_out):
                self._open()

    def _trips(self, now: float, *, timed_out: bool) -> bool:
        if self._failures >= self.failure_threshold or (timed_out and self.open_on_timeout):
            return True
        if self.failure_rate is None:
            return False
        calls, failures = self._window.totals(now)
        # Divided, not multiplied: 0.28 * 25 is 7.000000000000001 in floating point.
        return calls >= self.min_calls and failures / calls >= self.failure_rate

    def release(self) -> None:
        """Give back an admitted call's slot without an outcome, e.g. when it was cancelled.

        Raises ``RuntimeError`` when no admitted call is waiting for its outcome.
        """
        self._finish_call()

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        is_failure: Callable[[BaseException], bool] = _any_exception,
    ) -> T:
        """Await ``fn()`` through the breaker and return its result.

        Raises :class:`CircuitOpen` without calling ``fn`` when the breaker refuses. Exceptions
        from ``fn`` propagate unchanged: those for which ``is_failure`` is true count as
        failures, any other (a 4xx answer, say) shows the dependency is up and counts as a
        success. Cancellation records no outcome.
        """
        if not self.try_acquire():
            raise CircuitOpen(self.name, self.retry_after_s())
        try:
            result = await fn()
        except Exception as exc:
            if is_failure(exc):
                self.record_failure()
            else:
                self.record_success()
            raise
        except BaseException:
            # Cancellation (or the process exiting) says nothing about the dependency.
            self.release()
            raise
        self.record_success()
        return result

    def _state_at(self, now: float) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self.reset_timeout_s is not None
            and now - self._opened_at >= self.reset_timeout_s
        ):
            self._move_to(BreakerState.HALF_OPEN)
        return self._state

    def _finish_call(self) -> BreakerState:
        if self._in_flight == 0:
            raise RuntimeError(
                f"circuit breaker {self.name!r}: outcome recorded for a call it never admitted"
            )
        self._in_flight -= 1
        return self.state

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move_to(BreakerState.OPEN)

    def _move_to(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._failures = 0
        self._window.clear()
        if self._on_change is not None:
            self._on_change(self.name, old, new)
