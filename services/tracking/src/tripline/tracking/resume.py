"""Where a (re)connecting watcher starts. Pure: no I/O.

A fresh watcher gets a snapshot at the trip's current sequence number. A watcher reconnecting
with ``since`` gets exactly the events numbered after it, when the bounded history still holds
all of them; otherwise a fresh snapshot marked ``recovered: false``. Either way the caller then
forwards live events numbered after :attr:`Start.after`, so nothing is missed or repeated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Start:
    replay: list[str]
    """Events to send first (JSON text), oldest first; empty for a snapshot."""
    snapshot: bool
    recovered: bool | None
    """None for a first connection; True or False for a reconnection."""
    after: int
    """Live events numbered up to this were covered by the start."""


def event_seq(event: str) -> int:
    """The sequence number of a published event (JSON text with ``seq``)."""
    return int(json.loads(event)["seq"])


def plan_start(since: int | None, *, current: int, kept: Sequence[str]) -> Start:
    """Plan the start of a watcher. ``current`` is the trip's sequence number read after the
    watcher was subscribed; ``kept`` the history's events numbered after ``since``."""
    if since is None:
        return Start(replay=[], snapshot=True, recovered=None, after=current)
    missed = [event for event in kept if event_seq(event) <= current]
    numbers = [event_seq(event) for event in missed]
    complete = since <= current and numbers == list(range(since + 1, current + 1))
    if not complete:
        return Start(replay=[], snapshot=True, recovered=False, after=current)
    return Start(replay=missed, snapshot=False, recovered=True, after=current)
