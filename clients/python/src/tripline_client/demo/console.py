"""The demo's output: one line per happening, who did it, and when."""

from __future__ import annotations

from collections.abc import Callable


class Console:
    """Prints one line per happening, stamped with the seconds since the demo started."""

    def __init__(self, clock: Callable[[], float], write: Callable[[str], None]) -> None:
        self._clock = clock
        self._write = write
        self._start = clock()

    def say(self, who: str, text: str) -> None:
        self._write(f"{self._clock() - self._start:6.1f}s  {who:<7}  {text}")
