"""The replay loop's timing decisions, with a scripted queue and a recorded sleep."""

import asyncio
from typing import Any, cast

from tripline_client.backoff import Backoff
from tripline_client.connectivity import Connectivity
from tripline_client.errors import RateLimited, Unauthorized
from tripline_client.outbox import DrainStop, Outbox, StopReason
from tripline_client.replay import Replayer
from tripline_client.storage import StorageError


class ScriptedOutbox:
    """Each drain takes the next scripted result: a DrainStop, or an exception to raise."""

    def __init__(self, script: list[DrainStop | Exception]) -> None:
        self.script = script
        self.drains = 0
        self.done = asyncio.Event()

    async def drain(self) -> DrainStop:
        self.drains += 1
        if not self.script:
            self.done.set()
            return DrainStop(StopReason.EMPTY)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def never(_: Any = None) -> bool:
    return False


def replayer(outbox: ScriptedOutbox, sleeps: Sleeps, **options: Any) -> Replayer:
    connectivity = Connectivity(
        never,
        backoff=Backoff(base_s=1, cap_s=15),
        background_cap_s=120,
        sleep=sleeps,
        rand=lambda: 0.5,
    )
    return Replayer(
        cast(Outbox, outbox),
        connectivity,
        sleep=sleeps,
        rand=lambda: 0.5,
        **options,
    )


async def run(
    script: list[DrainStop | Exception], **options: Any
) -> tuple[ScriptedOutbox, Sleeps, Replayer]:
    """Run a replayer over ``script`` until the queue is empty."""
    outbox, sleeps = ScriptedOutbox(script), Sleeps()
    loop = replayer(outbox, sleeps, **options)
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(outbox.done.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return outbox, sleeps, loop


async def test_a_retry_after_beyond_the_cap_is_waited_out() -> None:
    refused = RateLimited("slow down", status=429, retry_after=60)
    outbox, sleeps, _ = await run([DrainStop(StopReason.TRANSIENT, refused)])
    assert sleeps.delays == [60]
    assert outbox.drains == 2


async def test_backoff_grows_between_refused_drains_and_resets_after_success() -> None:
    refused = DrainStop(StopReason.TRANSIENT, RateLimited("no", status=429))
    _, sleeps, _ = await run([refused, refused, refused])
    assert sleeps.delays == [0.5, 1.0, 2.0]


async def test_a_broken_drain_is_retried_after_a_backoff_instead_of_stopping_the_queue() -> None:
    outbox, sleeps, replayer = await run([StorageError("database is locked"), StorageError("x")])
    assert outbox.drains == 3
    assert sleeps.delays == [0.5, 1.0]
    assert not replayer.stalled.is_set()


async def test_a_refused_token_waits_for_a_new_one_unless_it_refreshes_itself() -> None:
    refused = DrainStop(StopReason.UNAUTHORIZED, Unauthorized("expired", status=401))
    outbox = ScriptedOutbox([refused, refused])
    fixed = replayer(outbox, Sleeps())
    task = asyncio.create_task(fixed.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert outbox.drains == 1
    assert fixed.stalled.is_set()
    fixed.wake()  # a new token
    for _ in range(20):
        await asyncio.sleep(0)
    assert outbox.drains == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    outbox, sleeps, _ = await run([refused, refused], token_refreshes=lambda: True)
    assert outbox.drains == 3
    assert sleeps.delays == [0.5, 1.0]
