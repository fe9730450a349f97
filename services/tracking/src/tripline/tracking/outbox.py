"""What a socket still has to send, bounded. Pure: no I/O.

A socket that reads slower than events arrive falls behind; its outbox then keeps only the
newest location (the older ones are superseded) and every status, SOS and control frame. When
even those fill it, the socket is stuck: :meth:`Outbox.offer` says so and the caller closes it
(the client reconnects with ``since`` and catches up from the history).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

LOCATION = "location"


@dataclass(frozen=True)
class Frame:
    """A frame to send: an event (with its sequence number and type) or a control frame."""

    text: str
    seq: int | None = None
    kind: str = "control"

    @property
    def droppable(self) -> bool:
        return self.kind == LOCATION


class Outbox:
    def __init__(self, capacity: int = 64, *, behind_after: int = 4) -> None:
        if capacity < 1 or behind_after < 1:
            raise ValueError("capacity and behind_after must be at least 1")
        self.capacity = capacity
        self.behind_after = behind_after
        self.dropped = 0
        self._frames: deque[Frame] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: Frame) -> bool:
        """Queue ``frame``; returns False when the outbox is full of frames that may not be
        dropped (the socket is stuck and must be closed)."""
        behind = frame.droppable and len(self._frames) >= self.behind_after
        if behind or len(self._frames) >= self.capacity:
            # Falling behind: a newer location makes the queued ones worthless.
            self._drop_locations()
        if len(self._frames) >= self.capacity:
            return False
        self._frames.append(frame)
        return True

    def take(self) -> list[Frame]:
        """Everything queued, oldest first; the outbox is empty afterwards."""
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def _drop_locations(self) -> None:
        kept = deque(frame for frame in self._frames if not frame.droppable)
        self.dropped += len(self._frames) - len(kept)
        self._frames = kept
