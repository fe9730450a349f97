"""One person's app in the demo: a Tripline client on a flaky network of its own, and the lines
it prints about what it sends."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from tripline_client import ClientConfig, Delivery, Outcome, Tripline
from tripline_client.demo.console import Console
from tripline_client.demo.flaky import FlakyTransport


class Phone:
    """``who``'s app: :attr:`client` talks to the gateway through :attr:`network`.

    Use :attr:`client` as an async context manager. Every critical action goes through
    :meth:`act`, which prints where it stands; one that was queued is printed again when it
    finishes, and :attr:`applied` and :attr:`failed` count the outcomes.
    """

    def __init__(
        self,
        who: str,
        *,
        gateway: str,
        token: str,
        data_dir: Path,
        config: ClientConfig,
        drop: float,
        network_rand: random.Random,
        sdk_rand: random.Random,
        clock: Callable[[], float],
        console: Console,
    ) -> None:
        self.who = who
        self.network = FlakyTransport(httpx.AsyncHTTPTransport(), rand=network_rand, drop=drop)
        self.client = Tripline(
            gateway,
            token,
            data_dir,
            config=config,
            rand=sdk_rand.random,
            clock=clock,
            http=httpx.AsyncClient(base_url=gateway, transport=self.network),
        )
        self.applied = 0
        self.failed = 0
        self._console = console
        self._deliveries: list[Delivery] = []
        self._queued: dict[str, str] = {}
        self.client.on_outcome(self._finished)

    def say(self, text: str) -> None:
        self._console.say(self.who, text)

    async def act(self, what: str, call: Awaitable[Delivery]) -> Delivery:
        """Make a critical action's ``call``, print ``what`` with its state and message, and
        return its delivery."""
        delivery = await call
        self._deliveries.append(delivery)
        if delivery.state == "queued":
            self._queued[delivery.action_id] = what
        self.say(f"{what}: {delivery.state}. {delivery.message}")
        return delivery

    async def settle(self) -> None:
        """Return once every action made through :meth:`act` has finished (applied or failed)."""
        await asyncio.gather(*(delivery.outcome() for delivery in self._deliveries))

    def pending(self) -> int:
        """How many actions are still on disk, unsent."""
        return len(self.client.pending_actions())

    def _finished(self, outcome: Outcome) -> None:
        if outcome.applied:
            self.applied += 1
        else:
            self.failed += 1
        what = self._queued.pop(outcome.action.id, None)
        if what is None:
            return
        if outcome.applied:
            self.say(f"{what}: applied after all. {outcome.action.kind.applied_message}")
        else:
            reason = outcome.error.user_message if outcome.error else "it was refused"
            self.say(f"{what}: failed. {reason}")
