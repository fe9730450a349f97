"""The tracking WebSocket protocol's frames, as pure functions: no sockets here.

Server frames are JSON text: ``snapshot`` on connect (or the missed events, on a reconnection
that recovered), then the trip's events as published (``location``, ``status``, ``sos``), and
``pong`` and ``error`` replies. Client frames are JSON text with a ``type``: ``ping``, or from
the trip's driver ``location`` (one point: ``lat``, ``lng``, ``ts``, ``heading``, ``speed``).
Unknown or malformed frames get an ``error`` frame and the connection stays open, so a flaky
client is never disconnected for one bad frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_CLIENT_FRAME_CHARS = 4096


class FrameError(Exception):
    """A client frame that cannot be understood; ``code`` is stable for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Ping:
    """``{"type": "ping"}``: the client checks the connection; answered with ``pong``."""


@dataclass(frozen=True)
class LocationFrame:
    """``{"type": "location", ...}``: one point from the driver, screened like posted ones."""

    point: dict[str, Any]


ClientFrame = Ping | LocationFrame


def parse_client_frame(text: str | None) -> ClientFrame:
    """Parse one client frame (``None`` for a binary one).

    Raises :class:`FrameError` when it is not a known frame.
    """
    if text is None:
        raise FrameError("malformed-frame", "frames must be JSON text")
    if len(text) > MAX_CLIENT_FRAME_CHARS:
        raise FrameError("frame-too-large", f"frames may be at most {MAX_CLIENT_FRAME_CHARS} chars")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FrameError("malformed-frame", "frames must be JSON objects") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise FrameError("malformed-frame", 'frames must be JSON objects with a "type"')
    if data["type"] == "ping":
        return Ping()
    if data["type"] == "location":
        return LocationFrame({name: value for name, value in data.items() if name != "type"})
    raise FrameError("unsupported-frame", f"frames of type {data['type']!r} are not accepted")


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def snapshot(
    seq: int, location: dict[str, Any] | None, status: str | None, recovered: bool | None = None
) -> str:
    frame: dict[str, Any] = {"type": "snapshot", "seq": seq, "location": location, "status": status}
    if recovered is not None:
        frame["recovered"] = recovered
    return encode(frame)


def rejected(reasons: list[dict[str, Any]]) -> str:
    """The reply to a driver's location frame that was not accepted."""
    return encode({"type": "error", "code": "location-rejected", "rejected": reasons})


def pong() -> str:
    return encode({"type": "pong"})


def error(exc: FrameError) -> str:
    return encode({"type": "error", "code": exc.code, "message": exc.message})
