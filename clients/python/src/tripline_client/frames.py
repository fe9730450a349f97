"""The tracking socket's server frames and what to do about each, apart from any I/O.

The server sends JSON text frames: on connect a ``snapshot`` (``seq``, ``location``,
``status``), or the events missed since the ``since`` the client gave; then the trip's events as
published (``location``, ``status``, ``sos``), each numbered by ``seq``. ``pong``, ``ack`` and
``error`` answer frames a client sent and are not events. :class:`Resume` follows the numbers so
that the app sees every event once and in order, across reconnections; :func:`close_reaction`
says what a close code asks of the client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tripline_client.errors import TriplineError, error_class

SNAPSHOT = "snapshot"
LOCATION = "location"
REPLIES = frozenset({"pong", "ack", "error"})
"""Answers to the client's own frames: never events, never numbered in the trip's sequence."""

SERVICE_RESTART = 1012
APPLICATION_BASE = 4000
"""Refusals after the upgrade close with 4000 + the HTTP status (4401, 4403, 4404...)."""


@dataclass(frozen=True)
class TripEvent:
    """One frame from the trip's socket: its ``type``, its number in the trip's sequence (``None``
    for frames that have none) and every other field of the frame in ``data``."""

    type: str
    seq: int | None
    data: dict[str, Any]


class MalformedFrame(ValueError):
    """A frame that is not a JSON object with a string ``type`` and, when present, a whole
    non-negative ``seq``."""


def parse_frame(message: str | bytes) -> TripEvent:
    """The frame in one socket message. Raises :class:`MalformedFrame` when it is not one."""
    try:
        frame = json.loads(message)
    except (ValueError, RecursionError) as error:
        raise MalformedFrame("frames must be JSON") from error
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise MalformedFrame('frames must be JSON objects with a "type"')
    seq = frame.get("seq")
    # bool is an int to Python, never a sequence number to the server.
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise MalformedFrame("seq must be a non-negative integer")
    if frame["type"] == SNAPSHOT and seq is None:
        raise MalformedFrame("a snapshot must carry seq")
    data = {name: value for name, value in frame.items() if name not in ("type", "seq")}
    return TripEvent(type=frame["type"], seq=seq, data=data)


def location_of(event: TripEvent) -> dict[str, Any] | None:
    """The trip location ``event`` tells of, shaped like the REST latest location (``lat``,
    ``lng``, ``ts``, ``heading``, ``speed``, ``seq``), or ``None`` when it tells of none."""
    if event.type == LOCATION:
        location = {name: value for name, value in event.data.items() if name != "trip_id"}
        if event.seq is not None:
            location["seq"] = event.seq
        return location
    if event.type == SNAPSHOT:
        saved = event.data.get("location")
        return dict(saved) if isinstance(saved, Mapping) else None
    return None


class Verdict(StrEnum):
    DELIVER = "deliver"
    """Give the event to the app."""
    DUPLICATE = "duplicate"
    """Already delivered (a replay overlapping what was seen): drop it."""
    GAP = "gap"
    """Events are missing before this one: drop it, close and reconnect with :meth:`since`; the
    server replays the missing ones and this one."""
    REPLY = "reply"
    """An answer to the client's own frame, not an event."""
    MALFORMED = "malformed"
    """Not a frame: skipped (and counted)."""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    event: TripEvent | None = None
    """The parsed frame; ``None`` only for a malformed one."""


class Resume:
    """The last sequence number seen on a trip's socket, and what each new frame means given it.

    Events are delivered in increasing ``seq``; a replay that overlaps what was delivered is
    dropped. A newer ``snapshot`` is delivered and becomes the new starting point; one marked
    ``recovered: false`` (the history no longer held what was missed) tells the app to refresh
    its whole view, and is taken even with a lower ``seq`` (the trip's numbering restarted on
    the server). Events that carry no ``seq`` are delivered as they come.

    With ``resync_on_gap`` (the default) an event numbered past ``last + 1`` is a
    :attr:`Verdict.GAP`: the caller must reconnect with :meth:`since`, so nothing is ever
    skipped. The tracking server leaves such holes on purpose, though: a socket that falls
    behind loses superseded locations, and a trip's driver is not sent its own locations.
    Without ``resync_on_gap`` holes are delivered across (and counted in :attr:`holes`),
    trusting the server's promise to close the socket rather than lose a status or SOS event.
    """

    def __init__(self, last_seq: int | None = None, *, resync_on_gap: bool = True) -> None:
        self._last = last_seq
        self._resync_on_gap = resync_on_gap
        self.malformed = 0
        self.duplicates = 0
        self.holes = 0

    @property
    def last_seq(self) -> int | None:
        """The highest ``seq`` delivered (or set by the last snapshot); ``None`` before any."""
        return self._last

    def since(self) -> int | None:
        """The ``since`` of the next connection: ``None`` (a fresh snapshot) before any event."""
        return self._last

    def accept(self, message: str | bytes) -> Decision:
        """Parse one socket message and decide what to do with it. Never raises: a malformed
        frame is counted in :attr:`malformed` and comes back as :attr:`Verdict.MALFORMED`."""
        try:
            event = parse_frame(message)
        except MalformedFrame:
            self.malformed += 1
            return Decision(Verdict.MALFORMED)
        return self.decide(event)

    def decide(self, event: TripEvent) -> Decision:
        """What to do with a parsed frame; advances :attr:`last_seq` when it is delivered."""
        if event.type in REPLIES:
            return Decision(Verdict.REPLY, event)
        seq, last = event.seq, self._last
        if seq is None:
            return Decision(Verdict.DELIVER, event)
        if event.type == SNAPSHOT:
            restarted = event.data.get("recovered") is False and last is not None and seq < last
            if last is not None and seq <= last and not restarted:
                self.duplicates += 1
                return Decision(Verdict.DUPLICATE, event)
            self._last = seq
            return Decision(Verdict.DELIVER, event)
        if last is not None and seq <= last:
            self.duplicates += 1
            return Decision(Verdict.DUPLICATE, event)
        if last is not None and seq > last + 1:
            self.holes += 1
            if self._resync_on_gap:
                return Decision(Verdict.GAP, event)
        self._last = seq
        return Decision(Verdict.DELIVER, event)


class Reaction(StrEnum):
    NOW = "now"
    """Reconnect at once, with ``since``."""
    BACKOFF = "backoff"
    """Reconnect with ``since`` after a backoff wait."""
    STOP = "stop"
    """Do not reconnect: the subscription ends with :attr:`CloseReaction.error`."""


@dataclass(frozen=True)
class CloseReaction:
    reaction: Reaction
    error: TriplineError | None = None
    """The refusal the close code carried (4000 + status), when it carried one."""


def close_reaction(code: int | None, reason: str = "") -> CloseReaction:
    """What the server's close ``code`` (``None`` when the connection dropped without a close
    frame) asks of a client that did not close the socket itself.

    1012 (the replica is stopping) asks for an immediate reconnection; 4000 + status is a
    refusal: a permanent one (4401 :class:`~tripline_client.errors.Unauthorized`, 4403
    ``Forbidden``, 4404 ``NotFound``, ...) ends the subscription with that error, a transient
    one (4429, 4503...) is retried after a backoff like every other code (1000 and 1001 the
    server ended the socket, 1013 it was too slow or lost its event feed, 1011, drops).
    """
    if code == SERVICE_RESTART:
        return CloseReaction(Reaction.NOW)
    if code is not None and APPLICATION_BASE <= code < APPLICATION_BASE + 1000:
        status = code - APPLICATION_BASE
        cls = error_class(None, status)
        error = cls(reason or None, status=status)
        return CloseReaction(Reaction.BACKOFF if cls.transient else Reaction.STOP, error)
    return CloseReaction(Reaction.BACKOFF)
