"""Background loops: running a step at a steady interval, and stopping a task within a bound.

A loop's step that raises is logged and the loop goes on: one failed look must not stop a
service's background work until its restart. A task is stopped by cancelling and awaiting it;
if it has not finished within ``timeout_s`` (a client library swallowed the cancellation, or a
cleanup hangs on a dead dependency) it is abandoned with an error log, so one stuck loop cannot
hold a service's shutdown forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tripline.common.logs import get_logger

log = get_logger(__name__)

STOP_TIMEOUT_S = 5.0


async def every(
    interval_s: float,
    step: Callable[[], Awaitable[object]],
    *,
    name: str,
    delay_first: bool = False,
) -> None:
    """Run ``step`` every ``interval_s`` seconds until cancelled (after one interval when
    ``delay_first``). Intervals count from each start, so a step that overruns is followed at
    once by the next, never by a burst of catch-ups. A step that raises is logged under
    ``name`` and the loop goes on."""
    loop = asyncio.get_running_loop()
    if delay_first:
        await asyncio.sleep(interval_s)
    while True:
        due = loop.time() + interval_s
        try:
            await step()
        except Exception:
            log.exception("background step failed", loop=name)
        await asyncio.sleep(max(0.0, due - loop.time()))


async def stop_task(task: asyncio.Task[Any], *, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel ``task`` and wait for it at most ``timeout_s``; never raises."""
    task.cancel()
    done, _pending = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.error("background task did not stop; abandoned", task=task.get_name())
        return
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", task=task.get_name(), error=repr(task.exception()))
