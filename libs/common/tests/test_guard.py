"""DependencyGuard: open on the first outage, refuse at once, probe in the background.

The probe runs on the real event loop with intervals of a few milliseconds; tests wait for what
they expect with a bounded loop and never assert how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tripline.common.breaker import BreakerState
from tripline.common.guard import DependencyGuard, GuardMetrics, guarding

CLOSED, OPEN = BreakerState.CLOSED, BreakerState.OPEN
Transition = tuple[str, BreakerState, BreakerState]
MakeGuard = Callable[..., DependencyGuard]

FAST = 0.01  # Probe interval for tests that watch the probe.
NEVER = 60.0  # Probe interval for tests in which the probe must not run.


class Unavailable(Exception):
    """What the guard raises when it refuses (each client brings its own type)."""


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, ConnectionError))


class FakeProbe:
    """A probe that plays ``steps`` (``"hang"``, ``"fail"`` or ``"ok"``), then ``then`` for ever."""

    def __init__(self, *steps: str, then: str = "ok") -> None:
        self.steps = list(steps)
        self.then = then
        self.calls = 0
        self.cancelled = 0

    async def __call__(self) -> None:
        step = self.steps[self.calls] if self.calls < len(self.steps) else self.then
        self.calls += 1
        if step == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        elif step == "fail":
            raise ConnectionError("still down")


async def wait_until(condition: Callable[[], bool], *, rounds: int = 2000) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``rounds`` short sleeps."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met in time")


def probes_running(name: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"probe:{name}" and not t.done()]


@pytest.fixture
def changes() -> list[Transition]:
    return []


@pytest.fixture
async def make_guard(changes: list[Transition]) -> AsyncIterator[MakeGuard]:
    """Build guards named ``mongo`` by default; every probe is stopped after the test."""
    guards: list[DependencyGuard] = []

    def make(probe: FakeProbe, *, name: str = "mongo", **kwargs: Any) -> DependencyGuard:
        options: dict[str, Any] = {"probe_interval_s": NEVER, "probe_timeout_s": 1.0, **kwargs}
        guard = DependencyGuard(
            name,
            probe=probe,
            is_outage=is_outage,
            refusal=lambda: Unavailable(name),
            on_change=lambda *change: changes.append(change),
            **options,
        )
        guards.append(guard)
        return guard

    yield make
    for guard in guards:
        await guard.stop()


def open_guard(guard: DependencyGuard) -> TimeoutError:
    """Make one call that times out; return the exception it raised."""
    error = TimeoutError("no reply")
    with pytest.raises(TimeoutError) as caught, guard.call():
        raise error
    return caught.value


async def test_calls_pass_while_up(make_guard: MakeGuard, changes: list[Transition]) -> None:
    probe = FakeProbe()
    guard = make_guard(probe, probe_interval_s=FAST)
    results = []
    for n in range(5):
        with guard.call():
            results.append(n)
    guard.check()
    assert results == [0, 1, 2, 3, 4]
    assert guard.up
    assert guard.refusals == 0
    assert changes == []
    await asyncio.sleep(5 * FAST)
    assert probe.calls == 0  # No probe while the dependency answers.
    assert probes_running("mongo") == []


async def test_an_outage_opens_the_guard_and_propagates_unchanged(
    make_guard: MakeGuard, changes: list[Transition]
) -> None:
    guard = make_guard(FakeProbe(then="fail"))
    error = TimeoutError("no reply")
    with pytest.raises(TimeoutError) as caught, guard.call():
        raise error
    assert caught.value is error
    assert not guard.up
    assert guard.breaker.state is OPEN
    assert changes == [("mongo", CLOSED, OPEN)]
    assert guard.refusals == 0  # The call that found the outage was not refused.


async def test_a_non_outage_error_counts_as_success_and_propagates(
    make_guard: MakeGuard, changes: list[Transition]
) -> None:
    guard = make_guard(FakeProbe())
    error = ValueError("duplicate key")
    for _ in range(3):
        with pytest.raises(ValueError, match="duplicate key") as caught, guard.call():
            raise error
        assert caught.value is error
    assert guard.up
    assert changes == []
    with pytest.raises(RuntimeError, match="never admitted"):
        guard.breaker.release()  # Each call's outcome was recorded.


async def test_while_open_call_refuses_without_running_the_block(make_guard: MakeGuard) -> None:
    guard = make_guard(FakeProbe(then="fail"))
    open_guard(guard)
    ran = False
    for n in range(1, 4):
        with pytest.raises(Unavailable, match="mongo"), guard.call():
            ran = True
        assert guard.refusals == n
    assert not ran
    assert not guard.up


async def test_check_refuses_only_while_open(make_guard: MakeGuard) -> None:
    guard = make_guard(FakeProbe(then="fail"))
    guard.check()
    assert guard.refusals == 0
    open_guard(guard)
    with pytest.raises(Unavailable, match="mongo"):
        guard.check()
    with pytest.raises(Unavailable):
        guard.check()
    assert guard.refusals == 2
    guard.breaker.probe_succeeded()
    guard.check()
    assert guard.refusals == 2


async def test_observe_records_an_admitted_calls_outcome(make_guard: MakeGuard) -> None:
    guard = make_guard(FakeProbe(then="fail"))
    assert guard.breaker.try_acquire()
    guard.observe(ValueError("bad command"))
    assert guard.up
    assert guard.breaker.try_acquire()
    guard.observe(ConnectionError("reset"))
    assert not guard.up


async def test_cancellation_inside_call_records_nothing(
    make_guard: MakeGuard, changes: list[Transition]
) -> None:
    guard = make_guard(FakeProbe())
    started = asyncio.Event()

    async def hangs() -> None:
        with guard.call():
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hangs())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guard.up
    assert changes == []
    with pytest.raises(RuntimeError, match="never admitted"):
        guard.breaker.release()  # The cancelled call's slot was given back.


async def test_the_probe_runs_while_open_and_closes_the_guard(
    make_guard: MakeGuard, changes: list[Transition]
) -> None:
    probe = FakeProbe("fail", "fail", "fail")
    guard = make_guard(probe, probe_interval_s=FAST)
    open_guard(guard)
    assert len(probes_running("mongo")) == 1
    with pytest.raises(Unavailable), guard.call():
        pass
    await wait_until(lambda: guard.up)
    assert probe.calls == 4  # Three failures, then the success that closed it.
    assert changes == [("mongo", CLOSED, OPEN), ("mongo", OPEN, CLOSED)]
    with guard.call():
        pass
    # Once it has closed the guard, the probe stops.
    await wait_until(lambda: probes_running("mongo") == [])
    await asyncio.sleep(5 * FAST)
    assert probe.calls == 4


async def test_the_probe_starts_again_on_the_next_outage(
    make_guard: MakeGuard, changes: list[Transition]
) -> None:
    probe = FakeProbe("fail", "ok", "fail")
    guard = make_guard(probe, probe_interval_s=FAST)
    open_guard(guard)
    await wait_until(lambda: guard.up)
    assert probe.calls == 2
    await wait_until(lambda: probes_running("mongo") == [])
    open_guard(guard)
    assert len(probes_running("mongo")) == 1
    await wait_until(lambda: guard.up)
    assert probe.calls == 4
    assert [(old, new) for _, old, new in changes] == [
        (CLOSED, OPEN),
        (OPEN, CLOSED),
        (CLOSED, OPEN),
        (OPEN, CLOSED),
    ]


async def test_a_hanging_probe_is_cut_by_its_timeout(make_guard: MakeGuard) -> None:
    probe = FakeProbe("hang", "hang")
    guard = make_guard(probe, probe_interval_s=FAST, probe_timeout_s=0.02)
    open_guard(guard)
    await wait_until(lambda: guard.up)
    assert probe.cancelled == 2
    assert probe.calls == 3


async def test_stop_cancels_a_running_probe(make_guard: MakeGuard) -> None:
    probe = FakeProbe(then="hang")
    guard = make_guard(probe, probe_interval_s=FAST, probe_timeout_s=NEVER)
    await guard.stop()  # Nothing to stop yet.
    open_guard(guard)
    await wait_until(lambda: probe.calls == 1)
    await guard.stop()
    assert probe.cancelled == 1
    assert probes_running("mongo") == []
    assert not guard.up  # Stopping the probe leaves the guard as it is.
    await guard.stop()


async def test_stop_ends_a_probe_between_attempts(make_guard: MakeGuard) -> None:
    probe = FakeProbe(then="fail")
    guard = make_guard(probe, probe_interval_s=FAST)
    open_guard(guard)
    await wait_until(lambda: probe.calls >= 2)
    await guard.stop()
    calls = probe.calls
    assert probes_running("mongo") == []
    await asyncio.sleep(5 * FAST)
    assert probe.calls == calls


async def test_guarding_stops_the_probe_on_exit(make_guard: MakeGuard) -> None:
    probe = FakeProbe(then="hang")
    guard = make_guard(probe, probe_interval_s=FAST, probe_timeout_s=NEVER)
    async with guarding(guard) as guarded:
        assert guarded is guard
        open_guard(guard)
        await wait_until(lambda: probe.calls == 1)
    assert probe.cancelled == 1
    assert probes_running("mongo") == []


async def test_guarding_stops_the_probe_when_the_block_raises(make_guard: MakeGuard) -> None:
    probe = FakeProbe(then="hang")
    guard = make_guard(probe, probe_interval_s=FAST, probe_timeout_s=NEVER)

    async def crashes() -> None:
        async with guarding(guard):
            open_guard(guard)
            await wait_until(lambda: probe.calls == 1)
            raise LookupError("app crashed")

    with pytest.raises(LookupError, match="app crashed"):
        await crashes()
    assert probe.cancelled == 1
    assert probes_running("mongo") == []


async def test_guarding_without_an_outage_starts_no_probe(make_guard: MakeGuard) -> None:
    probe = FakeProbe()
    guard = make_guard(probe, probe_interval_s=FAST)
    async with guarding(guard):
        with guard.call():
            pass
    assert probe.calls == 0
    assert guard.up


@pytest.mark.parametrize(
    "kwargs",
    [
        {"probe_interval_s": 0.0},
        {"probe_interval_s": -1.0},
        {"probe_timeout_s": 0.0},
        {"probe_timeout_s": -1.0},
    ],
)
async def test_invalid_probe_settings_are_rejected(
    make_guard: MakeGuard, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        make_guard(FakeProbe(), **kwargs)


async def test_metrics_expose_open_and_refusals_per_dependency(make_guard: MakeGuard) -> None:
    mongo = make_guard(FakeProbe(then="fail"), name="mongo")
    redis = make_guard(FakeProbe(then="fail"), name="redis")
    registry = CollectorRegistry()
    registry.register(GuardMetrics([mongo, redis]))

    def sample(metric: str, dependency: str) -> float | None:
        return registry.get_sample_value(metric, {"dependency": dependency})

    for dependency in ("mongo", "redis"):
        assert sample("tripline_dependency_guard_open", dependency) == 0.0
        assert sample("tripline_dependency_guard_refusals_total", dependency) == 0.0

    open_guard(mongo)
    with pytest.raises(Unavailable):
        mongo.check()
    with pytest.raises(Unavailable), mongo.call():
        pass
    assert sample("tripline_dependency_guard_open", "mongo") == 1.0
    assert sample("tripline_dependency_guard_refusals_total", "mongo") == 2.0
    assert sample("tripline_dependency_guard_open", "redis") == 0.0
    assert sample("tripline_dependency_guard_refusals_total", "redis") == 0.0

    mongo.breaker.probe_succeeded()
    assert sample("tripline_dependency_guard_open", "mongo") == 0.0
    assert sample("tripline_dependency_guard_refusals_total", "mongo") == 2.0  # A counter.
