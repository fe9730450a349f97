"""Stand-ins for pure-logic unit tests: only for what is injected, never for a server."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when told: pass it where code takes ``clock=time.monotonic``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StepClock:
    """A clock that advances by ``step`` seconds every time it is read: code that times a call
    sees it take exactly ``step``."""

    def __init__(self, step: float, now: float = 100.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
