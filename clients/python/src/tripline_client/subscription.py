"""A trip's live events over the gateway's WebSocket, kept alive across bad networks: each new
socket asks for ``since`` = the last event seen, so the server replays exactly what was missed
(:mod:`tripline_client.frames` keeps the count), and the last location stays on disk for while
the socket is down. Every failure the app can see is a ``TriplineError``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.http11 import Response

from tripline_client.backoff import Backoff, parse_retry_after
from tripline_client.errors import InternalError, InvalidRequest, TriplineError, from_problem
from tripline_client.frames import (
    LOCATION,
    Reaction,
    Resume,
    TripEvent,
    Verdict,
    close_reaction,
    location_of,
)
from tripline_client.lastknown import LastKnownStore
from tripline_client.storage import StorageError

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S: Final = 3.0
"""How long a close waits for the server's answer: a socket on a dead network must not hold up
``aclose()`` or a reconnection for long."""


class Connect(Protocol):
    """Opens a WebSocket: :func:`websockets.asyncio.client.connect`, or a test's wrapper."""

    def __call__(
        self,
        uri: str,
        *,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
    ) -> AbstractAsyncContextManager[ClientConnection]: ...


@dataclass(frozen=True)
class _Retry:
    at_once: bool = False
    retry_after: float | None = None
    healthy: bool = False
    """It delivered frames or lasted: the next failure counts as the first again."""


class _Inbox:
    """Events waiting for the app, oldest first. When ``capacity`` is reached the oldest queued
    location is dropped if a newer one is queued or arriving (it is superseded); status, SOS and
    snapshot events are never dropped, so those alone may grow the queue past ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self._events: deque[TripEvent] = deque()
        self._capacity = capacity
        self._changed = asyncio.Event()
        self._failure: TriplineError | None = None
        self._closed = False
        self.dropped = 0

    def put(self, event: TripEvent) -> None:
        if len(self._events) >= self._capacity:
            queued = [i for i, waiting in enumerate(self._events) if waiting.type == LOCATION]
            if len(queued) > 1 or (queued and event.type == LOCATION):
                del self._events[queued[0]]
                self.dropped += 1
        self._events.append(event)
        self._changed.set()

    def fail(self, error: TriplineError) -> None:
        """End with ``error`` once the queued events are read."""
        self._failure = error
        self._changed.set()

    def close(self) -> None:
        """End now: queued events are discarded."""
        self._closed = True
        self._events.clear()
        self._changed.set()

    async def get(self) -> TripEvent:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._events:
                return self._events.popleft()
            if self._failure is not None:
                failure, self._failure = self._failure, None
                self._closed = True
                raise failure
            self._changed.clear()
            await self._changed.wait()


class TripSubscription:
    """Trip ``trip_id``'s live events: an async context manager and async iterator.

    ``url(since)`` builds the socket's URL. The socket opens on entering (or on the first
    ``anext``: then call :meth:`aclose`). A dropped connection is reopened with ``since``: at
    once after 1012 or a gap in the numbers, else after ``backoff`` with full jitter and never
    sooner than a refusal's ``Retry-After`` (even past the cap: a subscription outlives any one
    call); a connection that lasted ``stable_after_s`` restarts the count (and only after one
    does 1012 reconnect at once).
    Iteration ends at :meth:`aclose`, or raises what ended the subscription once the events
    before it are read: a refusal retrying cannot fix (401 ``Unauthorized``, 403 ``Forbidden``,
    404 ``NotFound``, other 4xx), at the handshake or as a 4000 + status close code. Locations
    are saved to ``store``; a failed save is logged and events still flow. Events wait in a
    queue bounded by ``capacity`` that drops superseded locations only (:class:`_Inbox`).
    """

    def __init__(
        self,
        *,
        url: Callable[[int | None], str],
        store: LastKnownStore,
        trip_id: str,
        backoff: Backoff,
        rand: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        connect: Connect = websockets_connect,
        ping_interval_s: float = 20.0,
        critical: bool = False,
        on_close: Callable[[TripSubscription], None] | None = None,
        clock: Callable[[], float] = time.time,
        stable_after_s: float = 30.0,
        capacity: int = 256,
        resync_on_gap: bool = True,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.trip_id = trip_id
        self.critical = critical
        self._url = url
        self._store = store
        self._backoff = backoff
        self._rand = rand
        self._sleep = sleep
        self._connect = connect
        self._ping_interval_s = ping_interval_s
        self._on_close = on_close
        self._clock = clock
        self._stable_after_s = stable_after_s
        self._resume = Resume(resync_on_gap=resync_on_gap)
        self._inbox = _Inbox(capacity)
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._connections = 0
        self._started = False
        self._paused = False
        self._ended = False
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether a socket is open and listening now."""
        return self._ws is not None

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` holds the socket closed."""
        return self._paused

    @property
    def last_seq(self) -> int | None:
        """The last event number seen: the ``since`` of the next connection."""
        return self._resume.last_seq

    @property
    def last_known(self) -> dict[str, Any] | None:
        """The trip's last known location, from disk (so also while disconnected, and from an
        earlier run of the app). Raises :class:`StorageError` when the file cannot be read."""
        return self._store.get(self.trip_id)

    @property
    def reconnects(self) -> int:
        """Connections opened after the first one."""
        return max(0, self._connections - 1)

    @property
    def dropped(self) -> int:
        """Superseded locations dropped because the app read slower than they came."""
        return self._inbox.dropped

    @property
    def malformed(self) -> int:
        """Frames skipped because they were not frames of the protocol."""
        return self._resume.malformed

    def start(self) -> None:
        """Open the socket in the background (unless paused); calling it again does nothing."""
        self._started = True
        self._launch()

    def pause(self) -> None:
        """Close the socket and stop reconnecting until :meth:`resume`; events already queued
        can still be read."""
        self._paused = True
        self._ws = None
        self._retire()

    def resume(self) -> None:
        """Reconnect after :meth:`pause`, with ``since``, so the events missed meanwhile come
        first."""
        self._paused = False
        self._launch()

    async def aclose(self) -> None:
        """Close the socket (code 1000) and end the iteration; waits until no task of the
        subscription is left. Calling it again does nothing."""
        first = not self._closed
        self._closed = self._ended = True
        self._inbox.close()
        self._ws = None
        self._retire()
        await asyncio.gather(*list(self._retired), return_exceptions=True)
        if first and self._on_close is not None:
            self._on_close(self)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> TripEvent:
        self.start()
        return await self._inbox.get()

    def _launch(self) -> None:
        if self._started and not self._paused and not self._ended and self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"tripline-trip-{self.trip_id}")

    def _retire(self) -> None:
        """Cancel the runner, which closes its socket with 1000 (:meth:`_listen`)."""
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            self._retired.add(runner)
            runner.add_done_callback(self._retired.discard)

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except TriplineError as error:
            self._ended = True
            self._inbox.fail(error)
        except Exception as error:
            # A defect here must still end the app's iteration, and as a TriplineError.
            logger.exception("live tracking of trip %s stopped", self.trip_id)
            self._ended = True
            self._inbox.fail(InternalError(f"live tracking stopped: {error!r}"))

    async def _keep_connected(self) -> None:
        attempt = 0
        while True:
            retry = await self._session()
            attempt = 1 if retry.healthy else attempt + 1
            if retry.at_once and attempt == 1:
                continue
            delay = self._backoff.delay(attempt, rand=self._rand, retry_after=retry.retry_after)
            await self._sleep(delay if delay is not None else retry.retry_after or 0.0)

    async def _session(self) -> _Retry:
        """One connection, from handshake to close. Raises the error that ends the
        subscription; otherwise returns how to retry."""
        try:
            async with self._connect(
                self._url(self._resume.since()),
                ping_interval=self._ping_interval_s,
                ping_timeout=self._ping_interval_s,
                close_timeout=CLOSE_TIMEOUT_S,
            ) as ws:
                return await self._listen(ws)
        except InvalidStatus as refused:
            return self._refused(refused.response)
        except InvalidURI as error:
            raise InvalidRequest(f"the tracking URL is not valid: {error}") from error
        except (WebSocketException, OSError, TimeoutError) as error:
            logger.info("trip %s socket failed: %r", self.trip_id, error)
            return _Retry()

    async def _listen(self, ws: ClientConnection) -> _Retry:
        self._ws = ws
        self._connections += 1
        opened_at = self._clock()
        try:
            while True:
                try:
                    message = await ws.recv()
                except ConnectionClosed as closed:
                    # Only a connection that lasted resets the backoff: one that delivers a
                    # frame and closes at once, again and again, must not reconnect in a tight
                    # loop, as each upgrade spends the user's critical quota (SOS's too).
                    lasted = self._clock() - opened_at >= self._stable_after_s
                    return self._server_closed(closed, healthy=lasted)
                decision = self._resume.accept(message)
                if decision.verdict is Verdict.GAP:
                    await ws.close(reason="resync with since")
                    return _Retry(at_once=True, healthy=True)
                if decision.verdict is Verdict.DELIVER and decision.event is not None:
                    self._deliver(decision.event)
        except asyncio.CancelledError:
            # pause() and aclose() end a connection by cancelling it: the app chose to leave,
            # which is a normal closure (1000), not the 1011 an interrupted `async with` sends.
            with contextlib.suppress(WebSocketException, OSError):
                await ws.close()
            raise
        finally:
            if self._ws is ws:
                self._ws = None

    def _deliver(self, event: TripEvent) -> None:
        location = location_of(event)
        if location is not None:
            try:
                self._store.save(self.trip_id, location, location.get("seq"))
            except StorageError:
                # Live tracking matters more than the copy on disk: only last_known goes stale.
                logger.warning("cannot save trip %s's location", self.trip_id, exc_info=True)
        self._inbox.put(event)

    def _server_closed(self, closed: ConnectionClosed, *, healthy: bool) -> _Retry:
        frame = closed.rcvd
        reaction = close_reaction(frame.code if frame else None, frame.reason if frame else "")
        if reaction.reaction is Reaction.STOP and reaction.error is not None:
            raise reaction.error
        logger.info("trip %s socket closed: %s", self.trip_id, closed)
        return _Retry(at_once=reaction.reaction is Reaction.NOW, healthy=healthy)

    def _refused(self, response: Response) -> _Retry:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        error = from_problem(response.status_code, bytes(response.body), retry_after=retry_after)
        if not error.transient:
            raise error
        logger.info("trip %s socket refused: %r", self.trip_id, error)
        return _Retry(retry_after=retry_after)
