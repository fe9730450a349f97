import asyncio

from tripline.common.tasks import every, stop_task


async def test_a_failing_step_is_logged_and_the_loop_goes_on() -> None:
    calls = 0
    third = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third.set()
        raise RuntimeError("a look failed")

    task = asyncio.create_task(every(0.001, step, name="test"))
    await asyncio.wait_for(third.wait(), 10)
    await stop_task(task)
    assert calls >= 3


async def test_delay_first_waits_one_interval_before_the_first_step() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1

    task = asyncio.create_task(every(3600, step, name="test", delay_first=True))
    for _ in range(20):
        await asyncio.sleep(0)
    assert calls == 0
    await stop_task(task)
    immediate = asyncio.create_task(every(3600, step, name="test"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert calls == 1
    await stop_task(immediate)
