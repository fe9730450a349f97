"""How a provider answers: normally, with failures (every call, or a share of them), not at
all, or slowly.

Each provider has one :class:`Behaviour`. Handlers run their work inside
:meth:`Behaviour.call`, which applies the current mode before the work and counts the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tripline.common.errors import TriplineError

Sleep = Callable[[float], Awaitable[None]]

MAX_DELAY_S = 300.0
DEFAULT_SLOW_DELAY_S = 1.0
DEFAULT_MAX_HANG_S = 300.0


class Mode(StrEnum):
    OK = "ok"
    FAIL = "fail"
    HANG = "hang"
    SLOW = "slow"


class ModeChange(BaseModel):
    """Body of ``PUT /control/{provider}``. ``fail_ratio`` is the share of calls ``fail`` mode
    fails (1, every call, when not given); other modes refuse one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode
    delay_s: float | None = Field(default=None, ge=0, le=MAX_DELAY_S, allow_inf_nan=False)
    fail_ratio: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ratio_only_when_failing(self) -> ModeChange:
        if self.fail_ratio is not None and self.mode is not Mode.FAIL:
            raise ValueError("fail_ratio applies to the fail mode only")
        return self


class ProviderUnavailable(TriplineError):
    """The provider refuses to serve, because it was told to (or hung past the limit)."""

    slug = "provider-unavailable"
    title = "Provider unavailable"
    status = 503

    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "1"}, extra={"provider": provider})


@dataclass
class Counters:
    """Calls that reached the provider (``received``) and how they ended.

    ``failed`` counts every call that ended in an error or was abandoned by the client, so once
    nothing is in flight ``received == succeeded + failed``.
    """

    received: int = 0
    succeeded: int = 0
    failed: int = 0


class Behaviour:
    """The mode of one provider, the requests it holds hanging and its counters."""

    def __init__(
        self,
        provider: str,
        *,
        max_hang_s: float = DEFAULT_MAX_HANG_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.max_hang_s = max_hang_s
        self.mode = Mode.OK
        self.delay_s = 0.0
        self.fail_ratio = 1.0
        self._fail_calls = 0
        self.counters = Counters()
        self.hanging = 0
        self._sleep = sleep
        self._closed = False
        self._release = asyncio.Event()

    def configure(
        self, mode: Mode, delay_s: float | None = None, fail_ratio: float | None = None
    ) -> None:
        """Switch to ``mode``; leaving ``hang`` lets every held request carry on in the new mode.

        Without ``delay_s``, ``slow`` waits :data:`DEFAULT_SLOW_DELAY_S` and other modes none.
        In ``fail`` mode a share ``fail_ratio`` (default 1: all) of the calls fail, spread evenly
        and the same on every run: at 0.5 every second call from the switch on fails.
        """
        if delay_s is None:
            delay_s = DEFAULT_SLOW_DELAY_S if mode is Mode.SLOW else 0.0
        self.mode = mode
        self.delay_s = delay_s
        self.fail_ratio = 1.0 if fail_ratio is None else fail_ratio
        self._fail_calls = 0
        if mode is not Mode.HANG:
            self._wake_hanging()

    def reset(self) -> None:
        """Back to ``ok`` with zeroed counters, releasing any held request."""
        self.configure(Mode.OK)
        self.counters = Counters()

    def close(self) -> None:
        """Release held requests for good (they answer 503) so shutdown does not wait on them."""
        self._closed = True
        self._wake_hanging()

    def snapshot(self) -> dict[str, Any]:
        """The mode, delay, counters and number of held requests, as JSON-ready values."""
        return {
            "mode": self.mode.value,
            "delay_s": self.delay_s,
            "fail_ratio": self.fail_ratio,
            "received": self.counters.received,
            "succeeded": self.counters.succeeded,
            "failed": self.counters.failed,
            "hanging": self.hanging,
        }

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Apply the current mode, then run the caller's block and count how it ended.

        Raises :class:`ProviderUnavailable` in ``fail`` mode, when a hang hits ``max_hang_s``
        or when the provider closes while a request is held.
        """
        # Counters are replaced on reset: keep the ones this call started with.
        counters = self.counters
        counters.received += 1
        try:
            await self._misbehave()
            yield
        except BaseException:
            counters.failed += 1
            raise
        counters.succeeded += 1

    async def _misbehave(self) -> None:
        if self.mode is Mode.HANG:
            await self._hang()
        if self.mode is Mode.FAIL and self._fails_this_call():
            raise ProviderUnavailable(self.provider, f"the {self.provider} provider is failing")
        if self.mode is Mode.SLOW:
            await self._sleep(self.delay_s)

    async def _hang(self) -> None:
        self.hanging += 1
        try:
            async with asyncio.timeout(self.max_hang_s):
                while self.mode is Mode.HANG and not self._closed:
                    await self._release.wait()
        except TimeoutError as exc:
            raise ProviderUnavailable(
                self.provider, f"the {self.provider} provider hung for {self.max_hang_s:g}s"
            ) from exc
        finally:
            self.hanging -= 1
        if self._closed:
            raise ProviderUnavailable(self.provider, f"the {self.provider} provider is stopping")

    def _fails_this_call(self) -> bool:
        # Call n fails when it crosses the next whole multiple of 1/ratio: exactly
        # floor(n * ratio) of the first n calls fail, with no randomness to make runs differ.
        before = int(self._fail_calls * self.fail_ratio)
        self._fail_calls += 1
        return int(self._fail_calls * self.fail_ratio) > before

    def _wake_hanging(self) -> None:
        # Waiters hold the old event; a fresh one makes the next hang wait again.
        self._release.set()
        self._release = asyncio.Event()
