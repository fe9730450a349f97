"""The upstream services and the order in which to try an upstream's replicas. No I/O here."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Upstream(StrEnum):
    CORE = "core"
    UPLOAD = "upload"
    TRACKING = "tracking"
    MONITOR = "monitor"


@dataclass
class ReplicaSet:
    """Round-robin over the replicas of one upstream.

    :meth:`order` returns every replica, starting with the next in turn, so a caller that cannot
    connect to one moves on to the others.
    """

    urls: Sequence[str]
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("a replica set needs at least one URL")

    def order(self) -> list[str]:
        start = next(self._turn) % len(self.urls)
        return [*self.urls[start:], *self.urls[:start]]


def websocket_url(http_url: str) -> str:
    """``http://h:p`` → ``ws://h:p``; ``https`` → ``wss``."""
    if http_url.startswith("https://"):
        return "wss://" + http_url.removeprefix("https://")
    return "ws://" + http_url.removeprefix("http://")
