"""The tracking WebSocket protocol's frames, as pure functions: no sockets here.

Server frames are JSON text: ``snapshot`` on connect, then ``pong`` and ``error`` replies.
Client frames are JSON text with a ``type``; unknown or malformed frames get an ``error`` frame
and the connection stays open, so a flaky client is never disconnected for one bad frame.
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


ClientFrame = Ping


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
    raise FrameError("unsupported-frame", f"frames of type {data['type']!r} are not accepted")


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def snapshot(seq: int, location: dict[str, Any] | None, status: str | None) -> str:
    return encode({"type": "snapshot", "seq": seq, "location": location, "status": status})


def pong() -> str:
    return encode({"type": "pong"})


def error(exc: FrameError) -> str:
    return encode({"type": "error", "code": exc.code, "message": exc.message})
