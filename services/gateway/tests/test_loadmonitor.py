from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import pytest

from tripline.devstack.harness import scaled
from tripline.gateway.loadmonitor import LoopLagMonitor
from tripline.gateway.shedding import LoadShedder, Priority, SheddingConfig

# Small enough that a test sees several intervals in well under a second.
CONFIG = SheddingConfig(target_s=0.01, interval_s=0.1, sample_interval_s=0.01)
# Longer than target plus a sample interval: the sampler always wakes behind a slice, so every
# sample taken while the loop is hogged is late by more than target.
BLOCK_S = 0.03


class Hog:
    """Blocks the loop in BLOCK_S slices, one callback each, until stopped: a standing queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle = loop.call_soon(self._block)

    def _block(self) -> None:
        time.sleep(BLOCK_S)
        self._handle = self._loop.call_soon(self._block)

    def stop(self) -> None:
        self._handle.cancel()


T = TypeVar("T")


class Queued(Generic[T]):
    """A callback that queues what it is called with, for a test to await."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue()

    def put(self, item: T) -> None:
        self._queue.put_nowait(item)

    async def next(self) -> T:
        return await asyncio.wait_for(self._queue.get(), scaled(5))


class LevelChanges(Queued[tuple[int, int]]):
    def __call__(self, old: int, new: int) -> None:
        self.put((old, new))


class Samples(Queued[tuple[float, float]]):
    """Each sample as (loop time when it was recorded, lag)."""

    def __call__(self, lag_s: float) -> None:
        self.put((asyncio.get_running_loop().time(), lag_s))


@pytest.fixture
def changes() -> LevelChanges:
    return LevelChanges()


@pytest.fixture
def shedder(changes: LevelChanges) -> LoadShedder:
    return LoadShedder(CONFIG, on_level_change=changes)


@pytest.fixture
def samples() -> Samples:
    return Samples()


@pytest.fixture
async def monitor(shedder: LoadShedder, samples: Samples) -> AsyncIterator[LoopLagMonitor]:
    monitor = LoopLagMonitor(shedder, sample_interval_s=CONFIG.sample_interval_s, on_sample=samples)
    monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()


@pytest.mark.usefixtures("monitor")
async def test_a_hogged_loop_sheds_low_then_normal_and_recovers_when_idle(
    shedder: LoadShedder, changes: LevelChanges
) -> None:
    assert all(shedder.admit(priority) for priority in Priority)
    hog = Hog(asyncio.get_running_loop())
    try:
        assert await changes.next() == (0, 1)
        assert await changes.next() == (1, 2)
        # The top level: it holds for as long as the hog runs.
        assert shedder.level == 2
        assert not shedder.admit(Priority.LOW)
        assert not shedder.admit(Priority.NORMAL)
        assert shedder.admit(Priority.CRITICAL)
    finally:
        hog.stop()
    assert await changes.next() == (2, 1)
    assert await changes.next() == (1, 0)
    assert all(shedder.admit(priority) for priority in Priority)


@pytest.mark.usefixtures("monitor")
async def test_a_sample_measures_how_late_the_loop_woke_the_sampler(samples: Samples) -> None:
    await samples.next()
    stall_s = 0.1
    stall_ended = asyncio.get_running_loop().create_future()

    def stall() -> None:
        time.sleep(stall_s)
        stall_ended.set_result(asyncio.get_running_loop().time())

    asyncio.get_running_loop().call_soon(stall)
    ended_at = await stall_ended
    recorded_at, lag_s = await samples.next()
    while recorded_at < ended_at:
        assert lag_s >= 0.0
        recorded_at, lag_s = await samples.next()
    # The sampler was due at most one sample interval into the stall and ran only after it.
    assert lag_s >= stall_s - CONFIG.sample_interval_s


async def test_a_failing_hook_does_not_stop_the_sampling(shedder: LoadShedder) -> None:
    calls = Queued[None]()

    def broken(lag_s: float) -> None:
        calls.put(None)
        raise RuntimeError("hook bug")

    monitor = LoopLagMonitor(shedder, sample_interval_s=CONFIG.sample_interval_s, on_sample=broken)
    monitor.start()
    try:
        for _ in range(3):
            await calls.next()
    finally:
        await monitor.stop()


async def test_stop_leaves_no_pending_task(shedder: LoadShedder, samples: Samples) -> None:
    before = asyncio.all_tasks()
    monitor = LoopLagMonitor(shedder, sample_interval_s=CONFIG.sample_interval_s, on_sample=samples)
    monitor.start()
    assert len(asyncio.all_tasks() - before) == 1
    await samples.next()
    await monitor.stop()
    assert asyncio.all_tasks() - before == set()
    await monitor.stop()


async def test_stop_before_start_is_a_no_op(shedder: LoadShedder) -> None:
    await LoopLagMonitor(shedder, sample_interval_s=CONFIG.sample_interval_s).stop()


async def test_starting_twice_is_refused(monitor: LoopLagMonitor) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        monitor.start()


async def test_a_stopped_monitor_can_start_again(shedder: LoadShedder, samples: Samples) -> None:
    monitor = LoopLagMonitor(shedder, sample_interval_s=CONFIG.sample_interval_s, on_sample=samples)
    monitor.start()
    await monitor.stop()
    monitor.start()
    try:
        await samples.next()
    finally:
        await monitor.stop()


def test_start_needs_a_running_loop(shedder: LoadShedder) -> None:
    monitor = LoopLagMonitor(shedder, sample_interval_s=CONFIG.sample_interval_s)
    with pytest.raises(RuntimeError, match="no running event loop"):
        monitor.start()


@pytest.mark.parametrize("interval", [0.0, -0.01, float("nan"), float("inf")])
def test_the_sample_interval_must_be_a_positive_duration(
    shedder: LoadShedder, interval: float
) -> None:
    with pytest.raises(ValueError, match="sample_interval_s"):
        LoopLagMonitor(shedder, sample_interval_s=interval)
