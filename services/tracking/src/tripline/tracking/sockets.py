"""``WS /ws/trips/{id}``: a trip's live events for its rider, its driver and admins.

Opening: the token, the upgrade limit and the trip's parties are checked before the upgrade (a
refusal is a problem response, or a close code where the server cannot send one). The socket is
subscribed first, then the trip's sequence, history and latest location are read, so an event
published meanwhile is either covered by the start (:mod:`tripline.tracking.resume`) or
forwarded live, never both and never neither.

Sending: one task per socket drains its bounded :class:`~tripline.tracking.outbox.Outbox`. A
socket that falls behind loses superseded locations only; one whose outbox fills with frames
that may not be dropped, or whose send takes longer than ``SOCKET_SEND_TIMEOUT_S``, is closed
with 1013 and reconnects with ``since``. On SIGTERM every socket is closed with 1012 (service
restart): the client reconnects, through the load balancer, to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tripline.common.auth import Identity
from tripline.common.errors import (
    Overloaded,
    TriplineError,
    ValidationFailed,
)
from tripline.common.logs import get_logger
from tripline.tracking import frames
from tripline.tracking.context import Tracking, tracking_of
from tripline.tracking.hub import TRY_AGAIN_LATER
from tripline.tracking.outbox import LOCATION, Frame, Outbox
from tripline.tracking.parties import TripParties
from tripline.tracking.points import Point
from tripline.tracking.resume import Start, plan_start
from tripline.tracking.store import check_trip_id

log = get_logger(__name__)


class SocketWatcher:
    """One socket's side of the hub: an outbox, and a wake-up for its sender.

    The trip's driver is not sent locations: they are its own, and skipping them spares a frame
    a second per trip."""

    def __init__(self, capacity: int, *, skip_locations: bool = False) -> None:
        self.outbox = Outbox(capacity)
        self.skip_locations = skip_locations
        self.after = -1
        self.closing: tuple[int, str] | None = None
        self._ready = asyncio.Event()

    def deliver(self, frame: Frame) -> None:
        if self.closing is not None or (self.skip_locations and frame.kind == LOCATION):
            return
        if not self.outbox.offer(frame):
            self.close(TRY_AGAIN_LATER, "too slow: reconnect with since")
        self._ready.set()

    def lost(self, code: int, reason: str) -> None:
        self.close(code, reason)

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
        self._ready.set()

    async def next_frames(self) -> list[Frame]:
        await self._ready.wait()
        self._ready.clear()
        return self.outbox.take()


def since_of(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("since")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationFailed("since must be a sequence number (a non-negative integer)")
    return int(raw)


async def trip_socket(websocket: WebSocket) -> None:
    tracking = tracking_of(websocket)
    if tracking.health.draining:
        raise Overloaded(1)
    identity, token = await tracking.identity(websocket)
    trip_id = check_trip_id(websocket.path_params["trip_id"])
    since = since_of(websocket)
    await tracking.admit_socket(identity)
    parties = await tracking.parties.require(identity, token, trip_id)
    watcher = SocketWatcher(
        tracking.settings.socket_buffer, skip_locations=parties.is_driver(identity)
    )
    await tracking.hub.watch(trip_id, watcher)
    tracking.open_sockets.inc()
    try:
        start = await opening(tracking, trip_id, since)
        await websocket.accept()
        await send_start(websocket, tracking, trip_id, parties, start)
        watcher.after = start.after
        await converse(websocket, tracking, watcher, Caller(identity, token), trip_id)
    finally:
        tracking.open_sockets.dec()
        await tracking.hub.unwatch(trip_id, watcher)


async def opening(tracking: Tracking, trip_id: str, since: int | None) -> Start:
    """Plan the socket's start from the trip's sequence and history (read after subscribing)."""
    current, kept = await tracking.store.history_after(trip_id, since or 0)
    return plan_start(since, current=current, kept=kept)


async def send_start(
    websocket: WebSocket, tracking: Tracking, trip_id: str, parties: TripParties, start: Start
) -> None:
    for event in start.replay:
        await websocket.send_text(event)
    if start.snapshot:
        location = await tracking.store.latest(trip_id)
        text = frames.snapshot(start.after, location, parties.status, start.recovered)
        await websocket.send_text(text)


@dataclass
class Caller:
    identity: Identity
    token: str
    last_point: Point | None = None
    """The last location this socket's driver sent, the start of the next jump check."""


async def converse(
    websocket: WebSocket,
    tracking: Tracking,
    watcher: SocketWatcher,
    caller: Caller,
    trip_id: str,
) -> None:
    """Send and receive until the client leaves, the socket is closed or the replica drains."""
    tasks = [
        asyncio.create_task(send_loop(websocket, tracking, watcher)),
        asyncio.create_task(receive_loop(websocket, tracking, watcher, caller, trip_id)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
                await task
    if watcher.closing is not None:
        code, reason = watcher.closing
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code=code, reason=reason)


async def send_loop(websocket: WebSocket, tracking: Tracking, watcher: SocketWatcher) -> None:
    timeout_s = tracking.settings.socket_send_timeout_s
    while watcher.closing is None:
        for frame in await watcher.next_frames():
            if frame.seq is not None:
                if frame.seq <= watcher.after:
                    continue
                watcher.after = frame.seq
            try:
                await asyncio.wait_for(websocket.send_text(frame.text), timeout_s)
            except TimeoutError:
                watcher.close(TRY_AGAIN_LATER, "too slow: reconnect with since")
                return


async def receive_loop(
    websocket: WebSocket,
    tracking: Tracking,
    watcher: SocketWatcher,
    caller: Caller,
    trip_id: str,
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        watcher.deliver(await answer(tracking, message, caller, trip_id))


async def answer(
    tracking: Tracking, message: Mapping[str, Any], caller: Caller, trip_id: str
) -> Frame:
    """The reply to one client frame: ``pong``, ``ack`` (a driver's location was recorded, with
    its sequence number) or ``error``."""
    try:
        frame = frames.parse_client_frame(message.get("text"))
    except frames.FrameError as exc:
        return Frame(frames.error(exc))
    if isinstance(frame, frames.Ping):
        return Frame(frames.pong())
    identity = caller.identity
    try:
        parties = await tracking.parties.require(identity, caller.token, trip_id)
        if not parties.is_driver(identity):
            refusal = frames.FrameError("forbidden", "only the trip's driver sends locations")
            return Frame(frames.error(refusal))
        if caller.last_point is None:
            recorded = await tracking.intake.record(trip_id, identity.user_id, [frame.point])
        else:
            recorded = await tracking.intake.record_after(
                caller.last_point, trip_id, identity.user_id, [frame.point]
            )
        caller.last_point = recorded.last
    except TriplineError as exc:
        return Frame(frames.error(frames.FrameError(exc.slug, exc.detail)))
    if recorded.rejected:
        return Frame(frames.rejected(recorded.rejected))
    # No number when the point was not published: a replay of one already recorded, or one
    # kept in MongoDB's history while Redis was away.
    seq = recorded.seqs[0] if recorded.seqs else None
    return Frame(frames.encode({"type": "ack", "seq": seq}))
