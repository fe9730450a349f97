"""This replica's end of the trips' channels: one Redis subscription for every socket here.

A trip's channel is subscribed while at least one socket on this replica watches the trip, and
only then; each published event is parsed once and offered to every watcher's outbox. If the
subscription breaks, events may have been missed, so every watcher is told to reconnect (it
resumes from the history with ``since``) rather than carry on with a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from tripline.common.channels import events_channel
from tripline.common.errors import DependencyUnavailable
from tripline.common.health import Health
from tripline.common.logs import get_logger
from tripline.common.tasks import stop_task
from tripline.tracking.outbox import Frame

log = get_logger(__name__)

SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013
CHANNEL_PREFIX = "trip:"
CHANNEL_SUFFIX = ":events"


class Watcher(Protocol):
    """What the hub needs of a socket: somewhere to put frames, and a way to be dropped."""

    def deliver(self, frame: Frame) -> None: ...

    def lost(self, code: int, reason: str) -> None:
        """The socket must be closed with ``code`` and the client reconnect (with ``since``)."""


def event_frame(data: bytes | str) -> Frame:
    """The frame of a published event. Raises ``ValueError``/``KeyError`` for other data."""
    text = data.decode() if isinstance(data, bytes) else data
    event = json.loads(text)
    return Frame(text=text, seq=int(event["seq"]), kind=str(event["type"]))


class Hub:
    def __init__(
        self,
        redis: Redis,
        *,
        subscribe_timeout_s: float = 2.0,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._timeout_s = subscribe_timeout_s
        self._on_count = on_count
        self._watchers: dict[str, set[Watcher]] = {}
        self._subscribed: dict[str, asyncio.Event] = {}
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def trips(self) -> int:
        return len(self._watchers)

    async def watch(self, trip_id: str, watcher: Watcher) -> None:
        """Deliver the trip's events to ``watcher`` from now on. Returns once the channel's
        subscription is confirmed, so an event published afterwards reaches the watcher.
        Raises :class:`DependencyUnavailable` when Redis does not confirm it in time."""
        channel = events_channel(trip_id)
        async with self._lock:
            watchers = self._watchers.setdefault(trip_id, set())
            watchers.add(watcher)
            self._count()
            if channel not in self._subscribed:
                self._subscribed[channel] = asyncio.Event()
                try:
                    await self._ensure_pubsub().subscribe(channel)
                except (RedisError, OSError) as exc:
                    await self._forget(trip_id, watcher)
                    raise DependencyUnavailable("redis", "live events are unavailable") from exc
            confirmed = self._subscribed[channel]
        try:
            await asyncio.wait_for(confirmed.wait(), self._timeout_s)
        except TimeoutError as exc:
            await self.unwatch(trip_id, watcher)
            raise DependencyUnavailable("redis", "live events are unavailable") from exc

    async def unwatch(self, trip_id: str, watcher: Watcher) -> None:
        """Stop delivering to ``watcher``; the last one out unsubscribes the channel."""
        async with self._lock:
            await self._forget(trip_id, watcher)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await stop_task(listener)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    async def _forget(self, trip_id: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(trip_id)
        if watchers is None:
            return
        watchers.discard(watcher)
        if watchers:
            return
        del self._watchers[trip_id]
        self._count()
        channel = events_channel(trip_id)
        self._subscribed.pop(channel, None)
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                log.warning("unsubscribe failed", trip_id=trip_id, error=repr(exc))

    def _ensure_pubsub(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(self._pubsub))
        return self._pubsub

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                self._break(f"Redis subscription failed: {exc!r}")
                await asyncio.sleep(1.0)
                continue
            except RuntimeError:
                # Not subscribed to anything (yet, or any more): nothing to read.
                await asyncio.sleep(0.05)
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = _text(message.get("channel", b""))
        kind = message.get("type")
        if kind == "subscribe":
            confirmed = self._subscribed.get(channel)
            if confirmed is not None:
                confirmed.set()
            return
        if kind != "message":
            return
        trip_id = channel[len(CHANNEL_PREFIX) : -len(CHANNEL_SUFFIX)]
        watchers = self._watchers.get(trip_id)
        if not watchers:
            return
        try:
            frame = event_frame(message["data"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable event dropped", channel=channel)
            return
        for watcher in list(watchers):
            watcher.deliver(frame)

    def _break(self, reason: str) -> None:
        log.warning("live events interrupted; watchers told to reconnect", reason=reason)
        self.drop_all(TRY_AGAIN_LATER, "live events interrupted: reconnect with since")

    def drop_all(self, code: int, reason: str) -> None:
        """Tell every watcher on this replica to close with ``code`` (its client reconnects)."""
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.lost(code, reason)

    async def drop_all_when_draining(self, health: Health) -> None:
        """Once the replica drains (SIGTERM), close every socket with 1012 so its client
        reconnects, with ``since``, to another replica; then keep refusing new ones."""
        await health.wait_draining()
        self.drop_all(SERVICE_RESTART, "this replica is restarting: reconnect with since")

    def _count(self) -> None:
        if self._on_count is not None:
            self._on_count(len(self._watchers))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
