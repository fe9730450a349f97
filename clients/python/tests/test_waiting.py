import asyncio

from tripline_client.waiting import sleep_unless


async def test_the_whole_delay_passes_when_nothing_wakes() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    assert await sleep_unless(sleep, 3.0, asyncio.Event())
    assert slept == [3.0]


async def test_a_wake_cuts_the_wait_short_and_stays_set() -> None:
    wake = asyncio.Event()

    async def sleep(delay: float) -> None:
        await asyncio.sleep(3600)

    waiting = asyncio.create_task(sleep_unless(sleep, 3600, wake))
    await asyncio.sleep(0)
    wake.set()
    assert not await asyncio.wait_for(waiting, 5)
    assert wake.is_set()


async def test_cancelling_the_caller_leaves_no_wait_behind() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def sleep(delay: float) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(sleep_unless(sleep, 3600, asyncio.Event()))
    await started.wait()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), 5)
