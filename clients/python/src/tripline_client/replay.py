"""When the offline queue is sent: the loop that drains it.

The queue is drained as soon as something is added, whenever the gateway becomes reachable again,
when the host app gives a new token, and, while the platform refuses for now (503, 429, a dropped
connection), after a backoff that honours ``Retry-After`` and stretches in background mode. The
actions themselves, their order and their outcomes belong to :mod:`tripline_client.outbox`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tripline_client.connectivity import Connectivity
from tripline_client.outbox import DrainStop, Outbox, StopReason
from tripline_client.waiting import sleep_unless

logger = logging.getLogger("tripline_client.replay")


class Replayer:
    """Drains ``outbox`` whenever it may; :meth:`run` is its loop (one task per client).

    After a refused token the queue waits for :meth:`wake` (a new token), unless
    ``token_refreshes()`` says the token is read afresh for every request: then it tries again
    after the backoff, as the app may have refreshed it meanwhile.

    ``stalled`` is set from the moment a drain stops with actions left (unreachable, refused for
    now, token refused) until the next drain starts, so a caller waiting on one action's answer
    can stop waiting and tell its user the action is queued.
    """

    def __init__(
        self,
        outbox: Outbox,
        connectivity: Connectivity,
        *,
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
        token_refreshes: Callable[[], bool] = lambda: False,
    ) -> None:
        self._outbox = outbox
        self._token_refreshes = token_refreshes
        self._connectivity = connectivity
        self._sleep = sleep
        self._rand = rand
        self._wake = asyncio.Event()
        self._wake.set()
        self._backing_off = False
        self._draining = False
        self.stalled = asyncio.Event()
        connectivity.on_change(self._reachability_changed)

    def wake(self) -> None:
        """Drain now: the reason for waiting may be gone (the gateway is back, a new token)."""
        self.stalled.clear()
        self._wake.set()

    def queued(self, *, urgent: bool = False) -> None:
        """An action was added: drain now, unless a drain is running (it sends the new action
        too) or the platform just refused the queue for now. Then the action waits for the
        backoff, so apps that keep adding actions during an outage do not send the head again
        at each one; an ``urgent`` one (an SOS) cuts the backoff short all the same."""
        if not self._draining and (urgent or not self._backing_off):
            self.wake()

    async def run(self) -> None:
        """Drain whenever woken, until cancelled."""
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._connectivity.online:
                self.stalled.set()
                continue
            self.stalled.clear()
            stop = await self._drain()
            if stop is not None and stop.kind is StopReason.EMPTY:
                attempt = 0
                continue
            self.stalled.set()
            if stop is not None and stop.kind is StopReason.UNAUTHORIZED:
                if not self._token_refreshes():
                    logger.warning("offline queue waits for a new token (the platform refused it)")
                    continue
                logger.warning("the platform refused the token; asking for it again later")
            attempt += 1
            backoff = self._connectivity.backoff
            retry_after = stop.error.retry_after if stop is not None and stop.error else None
            delay = backoff.delay(attempt, rand=self._rand, retry_after=retry_after)
            # A Retry-After beyond the cap is still the platform's word: wait it out.
            await self._pause(delay if delay is not None else retry_after or backoff.cap_s)

    async def _drain(self) -> DrainStop | None:
        """One drain; ``None`` when it failed in a way that is not the platform's answer (the
        disk, a token function that raised): logged, and retried after a backoff like an
        outage, so the queue never stops for good."""
        self._draining = True
        try:
            return await self._outbox.drain()
        except Exception:
            logger.exception("the offline queue could not be sent; trying again later")
            return None
        finally:
            self._draining = False

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` before draining again, or less when woken."""
        self._backing_off = True
        try:
            if await sleep_unless(self._sleep, delay, self._wake):
                self._wake.set()
        finally:
            self._backing_off = False

    def _reachability_changed(self, online: bool) -> None:
        # Going offline is not a stall by itself: a call in flight may still get through on its
        # retries. The drain says when the queue really stopped.
        if online:
            self.wake()
