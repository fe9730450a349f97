"""Stopping a background task within a bound.

A task is cancelled and awaited; if it has not finished within ``timeout_s`` (a client library
swallowed the cancellation, or a cleanup hangs on a dead dependency) it is abandoned with an
error log, so one stuck loop cannot hold a service's shutdown forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tripline.common.logs import get_logger

log = get_logger(__name__)

STOP_TIMEOUT_S = 5.0


async def stop_task(task: asyncio.Task[Any], *, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel ``task`` and wait for it at most ``timeout_s``; never raises."""
    task.cancel()
    done, _pending = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.error("background task did not stop; abandoned", task=task.get_name())
        return
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", task=task.get_name(), error=repr(task.exception()))
