"""Whether the gateway can be reached, and when to look again.

Three sources feed it: the SDK's own calls (every answer says "reachable", every failed
connection "unreachable"), a cheap probe (``GET /health``) that runs only while the gateway is
unreachable, with backoff, and the host app's network hook (:meth:`Connectivity.network_changed`,
for the platform's "network lost / network back" notifications). In background mode the probe's
backoff stretches to ``background_cap_s``: an app in a pocket should not wake the radio every few
seconds. Listeners hear each change once, which is what triggers the offline queue's replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tripline_client.backoff import Backoff
from tripline_client.waiting import sleep_unless

logger = logging.getLogger("tripline_client.connectivity")

Probe = Callable[[], Awaitable[bool]]
Listener = Callable[[bool], None]


class Connectivity:
    """The gateway's reachability; :meth:`run` is the probe loop (one task per client)."""

    def __init__(
        self,
        probe: Probe,
        *,
        backoff: Backoff,
        background_cap_s: float,
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
    ) -> None:
        self._probe = probe
        self._backoff = backoff
        self._background_backoff = backoff.capped(background_cap_s)
        self._sleep = sleep
        self._rand = rand
        self._online = True
        self._background = False
        self._listeners: list[Listener] = []
        self._online_event = asyncio.Event()
        self._online_event.set()
        self._look_now = asyncio.Event()

    @property
    def online(self) -> bool:
        return self._online

    @property
    def background(self) -> bool:
        return self._background

    @property
    def backoff(self) -> Backoff:
        """The waits for now: the foreground policy, or the same capped at ``background_cap_s``
        in background mode (the probe and the offline queue's replay both wait by it)."""
        return self._background_backoff if self._background else self._backoff

    def set_background(self, background: bool) -> None:
        """Stretch (True) or restore (False) the probe's backoff."""
        self._background = background
        self._look_now.set()

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(online)`` on every change of reachability."""
        self._listeners.append(listener)

    def observe(self, reachable: bool) -> None:
        """Record what a call just saw: the gateway answered (True) or could not be reached."""
        if reachable == self._online:
            return
        self._online = reachable
        if reachable:
            self._online_event.set()
        else:
            self._online_event.clear()
            self._look_now.set()
        logger.info("gateway %s", "reachable" if reachable else "unreachable")
        for listener in list(self._listeners):
            try:
                listener(reachable)
            except Exception:
                logger.exception("a connectivity listener failed")

    def network_changed(self, available: bool) -> None:
        """The host app's hook: the device lost (False) or regained (True) its network.

        Losing it marks the gateway unreachable at once, so no call waits for a timeout to
        learn it; regaining it makes the probe look now instead of at its next backoff.
        """
        if not available:
            self.observe(False)
        else:
            self._look_now.set()

    async def wait_online(self) -> None:
        """Return once the gateway is reachable (at once when it is)."""
        await self._online_event.wait()

    async def run(self) -> None:
        """Probe while unreachable, with backoff, until cancelled."""
        attempt = 0
        while True:
            if self._online:
                attempt = 0
                self._look_now.clear()
                await self._look_now.wait()
                continue
            self._look_now.clear()
            if await self._probe():
                self.observe(True)
                continue
            attempt += 1
            backoff = self._background_backoff if self._background else self._backoff
            await sleep_unless(
                self._sleep, backoff.jitter(attempt, rand=self._rand), self._look_now
            )
