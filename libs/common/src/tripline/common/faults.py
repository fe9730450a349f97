"""Injected latency: ``FAULT_DELAY_S`` holds every request a service answers for that long
before it is handled, so that a load test can show its release gate fails when a service is
slow. Local only (the settings refuse it in production); probes and metrics are not delayed, so
a slowed service stays ready and observable while its users wait."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

UNDELAYED_PREFIXES = ("/health", "/metrics")


class FaultDelay:
    """Delays each HTTP request by ``delay_s`` (``sleep`` is injected for tests)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        delay_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.app = app
        self.delay_s = delay_s
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(UNDELAYED_PREFIXES):
            await self.sleep(self.delay_s)
        await self.app(scope, receive, send)
