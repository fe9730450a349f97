"""A wait that something can cut short: the SDK's loops back off, but a change of network or
token must not wait out the backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def sleep_unless(
    sleep: Callable[[float], Awaitable[None]], delay: float, wake: asyncio.Event
) -> bool:
    """Wait ``delay`` seconds with ``sleep``, or until ``wake`` is set, whichever comes first.

    Returns True when the whole delay passed, False when ``wake`` cut it short (``wake`` is left
    set, for the caller to clear). Cancelling the caller cancels both waits.
    """
    sleeper = asyncio.ensure_future(sleep(delay))
    waker = asyncio.ensure_future(wake.wait())
    try:
        done, _ = await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waker):
            task.cancel()
    return sleeper in done
