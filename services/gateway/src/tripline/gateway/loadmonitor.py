"""The event-loop lag sampler that feeds ``shedding.LoadShedder``.

Every ``sample_interval_s`` a task asks the running loop to wake it and measures how late it
woke: how long a ready callback currently waits for its turn (see ``shedding`` for why that is
the overload signal).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from tripline.common.logs import get_logger
from tripline.gateway.shedding import LoadShedder

log = get_logger(__name__)


class LoopLagMonitor:
    """Runs while the app runs: ``start()`` in the lifespan, ``stop()`` on shutdown.

    Each lag sample, in seconds and never negative, goes to ``shedder.observe`` and then to
    ``on_sample`` (a histogram, say). Raises ValueError unless ``sample_interval_s`` is a
    positive, finite number of seconds.
    """

    def __init__(
        self,
        shedder: LoadShedder,
        *,
        sample_interval_s: float,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        if not (math.isfinite(sample_interval_s) and sample_interval_s > 0):
            raise ValueError(
                f"sample_interval_s must be a positive, finite number, got {sample_interval_s!r}"
            )
        self._shedder = shedder
        self._sample_interval_s = sample_interval_s
        self._on_sample = on_sample
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop; raises RuntimeError when already started or when
        no loop is running."""
        if self._task is not None:
            raise RuntimeError("the loop lag monitor is already running")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._sample_forever(), name="loop-lag-monitor")

    async def stop(self) -> None:
        """Stop sampling and return once the sampling task has finished; a no-op when the
        monitor is not running."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # Unlike awaiting the task, this never swallows a cancellation of stop() itself.
        await asyncio.wait({task})

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._sample_interval_s
            await asyncio.sleep(self._sample_interval_s)
            # A loop may run a timer up to its clock resolution early.
            self._record(max(0.0, loop.time() - due))

    def _record(self, lag_s: float) -> None:
        try:
            self._shedder.observe(lag_s)
            if self._on_sample is not None:
                self._on_sample(lag_s)
        except Exception:
            # Sampling must go on: without samples the shedding level would freeze where it is.
            log.exception("loop lag sample hook failed", lag_s=lag_s)
