"""A guard for a dependency that may hang: notice it once, refuse at once, probe in the background.

A dependency that hangs (sockets open, no replies: a paused process, a full disk, a network
partition that drops packets) is the costly failure: every call waits out its whole timeout,
so with MongoDB hung an SOS that touched it three times took three timeouts. A
:class:`DependencyGuard` owns a :class:`~tripline.common.breaker.CircuitBreaker` that opens on
the first call that shows the dependency is not answering, and that never lets a request
through to find out whether it is back: the guard's own probe (a ``PING``) runs every
``probe_interval_s`` under ``probe_timeout_s`` while the breaker is open, and closes it on its
first success. So requests pay the timeout once, the first ones, then get their fallback
(a cached or stale copy, a queued write) at once, and recovery needs no request and no restart.

Failing over at the first timeout is deliberate: one spurious timeout sends callers to their
fallbacks for one probe interval, which is cheap, whereas waiting for a second timeout doubles
what every caller pays when the dependency really hung.

Which errors mean "not answering" is the caller's decision (``is_outage``); anything else
(an invalid command, a duplicate key) shows the dependency answered and counts as a success.
Refusals raise what ``refusal()`` makes, so each client keeps its own error type at the
boundary that already translates it.

Not thread-safe: one guard belongs to one event loop. The probe is a task the guard starts
when it opens and that ends when the dependency answers; whoever owns the guard stops it with
:meth:`stop` (or :func:`guarding`) so that no probe outlives its app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.common.logs import get_logger

log = get_logger(__name__)

Probe = Callable[[], Awaitable[object]]
OnChange = Callable[[str, BreakerState, BreakerState], None]


class DependencyGuard:
    """Admits calls to one dependency while it answers; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        probe: Probe,
        is_outage: Callable[[BaseException], bool],
        refusal: Callable[[], Exception],
        probe_interval_s: float = 0.5,
        probe_timeout_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        if probe_interval_s <= 0 or probe_timeout_s <= 0:
            raise ValueError("probe_interval_s and probe_timeout_s must be positive")
        self.name = name
        self.breaker = CircuitBreaker(
            name, failure_threshold=1, reset_timeout_s=None, clock=clock, on_change=self._changed
        )
        self._probe = probe
        self._is_outage = is_outage
        self._refusal = refusal
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._on_change = on_change
        self._prober: asyncio.Task[None] | None = None
        self.refusals = 0

    @property
    def up(self) -> bool:
        """False from the first outage until a probe succeeds."""
        return self.breaker.state is BreakerState.CLOSED

    def check(self) -> None:
        """Raise the refusal when the dependency is known not to answer; else return."""
        if not self.up:
            self.refusals += 1
            raise self._refusal()

    @contextmanager
    def call(self) -> Iterator[None]:
        """Guard the calls made inside the block.

        Raises the refusal, without running the block, while the guard is open. An outage
        raised inside opens it (the exception propagates unchanged); cancellation records
        nothing.
        """
        if not self.breaker.try_acquire():
            self.refusals += 1
            raise self._refusal()
        try:
            yield
        except Exception as exc:
            self.observe(exc)
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()

    def observe(self, exc: BaseException) -> None:
        """Record the outcome of an admitted call that raised ``exc``."""
        if self._is_outage(exc):
            self.breaker.record_failure()
        else:
            self.breaker.record_success()

    async def stop(self) -> None:
        """Cancel the probe, if one is running; the guard stays as it is."""
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with suppress(asyncio.CancelledError):
                await prober

    async def _probe_until_up(self) -> None:
        while not self.up:
            await asyncio.sleep(self._probe_interval_s)
            try:
                async with asyncio.timeout(self._probe_timeout_s):
                    await self._probe()
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                log.debug("dependency probe failed", dependency=self.name, error=repr(exc))
                continue
            self.breaker.probe_succeeded()

    def _changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            log.warning("dependency not answering: serving fallbacks", dependency=name)
            if self._prober is None or self._prober.done():
                self._prober = asyncio.get_running_loop().create_task(
                    self._probe_until_up(), name=f"probe:{name}"
                )
        elif new is BreakerState.CLOSED:
            log.warning("dependency answering again", dependency=name, refused=self.refusals)
        if self._on_change is not None:
            self._on_change(name, old, new)


@asynccontextmanager
async def guarding(guard: DependencyGuard) -> AsyncIterator[DependencyGuard]:
    """``guard`` for the block; its probe, if one is running, is stopped when the block ends."""
    try:
        yield guard
    finally:
        await guard.stop()


class GuardMetrics(Collector):
    """Exposes guards for Prometheus: ``tripline_dependency_guard_open`` (1 while a guard
    refuses calls) and ``tripline_dependency_guard_refusals_total`` (calls answered with the
    fallback at once), both per ``dependency``."""

    def __init__(self, guards: Iterable[DependencyGuard]) -> None:
        self._guards = list(guards)

    def collect(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            "tripline_dependency_guard_open",
            "1 while the dependency's guard refuses calls (it did not answer; probing).",
            labels=["dependency"],
        )
        refusals = CounterMetricFamily(
            "tripline_dependency_guard_refusals",
            "Calls refused at once by the dependency's guard (served by a fallback).",
            labels=["dependency"],
        )
        for guard in self._guards:
            opened.add_metric([guard.name], 0.0 if guard.up else 1.0)
            refusals.add_metric([guard.name], float(guard.refusals))
        yield opened
        yield refusals
