"""A deliberately bad network for the demo: an httpx transport that loses requests and answers.

A phone's network fails a client in two ways that matter. Some requests never leave the phone
(no signal, a refused connection): sending them again is harmless. Others reach the platform and
are applied, but the answer is lost on the way back: sending those again is safe only because
the SDK sends the same ``Idempotency-Key``, so the platform applies them once. The
:class:`FlakyTransport` makes both happen at random, and refuses everything while the scenario
holds the phone in a :meth:`~FlakyTransport.tunnel`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass
class NetworkStats:
    """What the network did to one phone's requests."""

    requests: int = 0
    refused: int = 0
    """Refused before sending, at random: the platform never saw them."""
    answers_lost: int = 0
    """Forwarded to the platform, which answered, but the answer was dropped."""
    in_tunnel: int = 0
    """Refused because the phone was in a tunnel."""
    resent: int = 0
    """Writes that carried an ``Idempotency-Key`` this network had already carried: the SDK's
    retries and the offline queue's replays."""


class FlakyTransport(httpx.AsyncBaseTransport):
    """Wraps ``inner`` so that a fraction ``drop`` of requests fail, decided by ``rand``: half of
    those are refused before sending (``httpx.ConnectError``), half are forwarded and their
    answer dropped (``httpx.ReadError``). Closing it closes ``inner``."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, rand: random.Random, drop: float
    ) -> None:
        if not 0.0 <= drop <= 1.0:
            raise ValueError(f"drop is a fraction from 0 to 1, not {drop}")
        self.stats = NetworkStats()
        self._inner = inner
        self._rand = rand
        self._drop = drop
        self._offline = False
        self._keys: set[str] = set()

    @contextmanager
    def tunnel(self) -> Iterator[None]:
        """No signal at all inside the ``with`` block: every request is refused."""
        self._offline = True
        try:
            yield
        finally:
            self._offline = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.stats.requests += 1
        key = request.headers.get("idempotency-key")
        if key is not None:
            self.stats.resent += key in self._keys
            self._keys.add(key)
        if self._offline:
            self.stats.in_tunnel += 1
            raise httpx.ConnectError("no signal (in a tunnel)", request=request)
        roll = self._rand.random()
        if roll < self._drop / 2:
            self.stats.refused += 1
            raise httpx.ConnectError("connection refused (flaky network)", request=request)
        response = await self._inner.handle_async_request(request)
        if roll < self._drop:
            # Read the answer first: the platform has done the work, only the phone never hears.
            await response.aread()
            await response.aclose()
            self.stats.answers_lost += 1
            raise httpx.ReadError("connection lost before the answer arrived", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
