"""The SDK's front door: :class:`Tripline`, one client per signed-in user.

Plain calls (profiles, trips, payments, uploads) go out at once through the resilient transport
and raise a :class:`~tripline_client.errors.TriplineError` when they fail. Critical actions (SOS,
trip status changes, location batches, upload completions) are written to disk first and sent in
order by the offline queue; their call returns a :class:`Delivery` that says whether the action
was applied, is queued, or failed for good, with a sentence to show the user.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from tripline_client import actions
from tripline_client.actions import Action, ActionKind
from tripline_client.budget import RetryBudget
from tripline_client.calls import PlainCalls, segment
from tripline_client.config import ClientConfig
from tripline_client.connectivity import Connectivity
from tripline_client.delivery import Delivery
from tripline_client.errors import NetworkError, NotFound, TriplineError, UnexpectedResponse
from tripline_client.lastknown import LastKnownStore
from tripline_client.outbox import Outbox
from tripline_client.outbox_store import OutboxStore, Outcome
from tripline_client.replay import Replayer
from tripline_client.storage import open_database
from tripline_client.subscription import TripSubscription
from tripline_client.transport import Transport

TERMINAL_UPLOAD_STATES = frozenset({"verified", "rejected", "failed"})


class Tripline(PlainCalls):
    """A client of the Tripline gateway at ``base_url``, acting with ``token``.

    ``data_dir`` holds the offline queue and the last known locations; give each signed-in user
    their own. Use it as an async context manager (or call :meth:`start` and :meth:`close`):
    starting it opens the file and resumes sending whatever an earlier run left queued.
    ``sleep``, ``rand`` and ``clock`` exist for tests and simulations, and ``http`` for a
    prepared ``httpx.AsyncClient`` (its ``base_url`` must be ``base_url``; the client closes it).
    """

    def __init__(
        self,
        base_url: str,
        token: str | Callable[[], str],
        data_dir: Path,
        *,
        config: ClientConfig | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self._token = token
        self._data_dir = data_dir
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self.transport = Transport(
            base_url,
            self.token,
            timeout_s=self.config.timeout_s,
            max_retries=self.config.max_retries,
            backoff=self.config.backoff,
            budget=RetryBudget(clock=clock, rand=rand, k=self.config.retry_budget_k),
            sleep=sleep,
            rand=rand,
            clock=clock,
            http=http,
        )
        self.connectivity = Connectivity(
            self._probe,
            backoff=self.config.probe_backoff,
            background_cap_s=self.config.background_probe_cap_s,
            sleep=sleep,
            rand=rand,
        )
        self.transport.observe_network(self.connectivity.observe)
        self._callbacks: list[Callable[[Outcome], None]] = []
        self._subscriptions: set[TripSubscription] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: Outbox | None = None
        self._replayer: Replayer | None = None
        self._lastknown: LastKnownStore | None = None
        self._database: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the SDK's file and start the probe and the replay of queued actions.

        Raises :class:`~tripline_client.storage.StorageError` when ``data_dir`` is unusable.
        """
        self._database = open_database(self._data_dir)
        self._lastknown = LastKnownStore(self._database)
        self._outbox = Outbox(
            OutboxStore(self._database),
            self._send_action,
            clock=self._clock,
            max_attempts=self.config.max_action_attempts,
            max_age_s=self.config.max_action_age_s,
        )
        for callback in self._callbacks:
            self._outbox.on_outcome(callback)
        self._replayer = Replayer(
            self._outbox,
            self.connectivity,
            sleep=self._sleep,
            rand=self._rand,
            token_refreshes=lambda: callable(self._token),
        )
        self._tasks = [
            asyncio.create_task(self.connectivity.run(), name="tripline-connectivity"),
            asyncio.create_task(self._replayer.run(), name="tripline-replay"),
        ]

    async def close(self) -> None:
        """Stop the background work, close subscriptions and the file. Queued actions stay on
        disk and go out when a client is started again on the same ``data_dir``."""
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._outbox is not None:
            self._outbox.release()
        await self.transport.aclose()
        if self._database is not None:
            self._database.close()
            self._database = None

    # -- identity and modes ------------------------------------------------------------------

    def token(self) -> str:
        """The token sent with every call (surrounding whitespace, as read from a file, is
        dropped: it cannot travel in a header)."""
        token = self._token() if callable(self._token) else self._token
        return token.strip()

    def set_token(self, token: str | Callable[[], str]) -> None:
        """Use a new token from now on (after a refresh or a new sign-in); queued actions that
        were refused for the old one are sent again."""
        self._token = token
        if self._replayer is not None:
            self._replayer.wake()

    def report_network(self, available: bool) -> None:
        """The host app's hook for the device's network notifications."""
        self.connectivity.network_changed(available)

    def set_background(self, background: bool) -> None:
        """Background mode: probes, replays and polling wait longer, and only critical trip
        subscriptions stay connected (the others pause and resume with ``since`` after)."""
        self.connectivity.set_background(background)
        for subscription in self._subscriptions:
            if subscription.critical:
                continue
            if background:
                subscription.pause()
            else:
                subscription.resume()

    async def latest_location(self, trip_id: str) -> dict[str, Any] | None:
        """The trip's latest location, or ``None`` when none is known.

        When the platform cannot be reached, the last one this device saw is returned instead,
        marked ``"stale": True``; without one the network error is raised.
        """
        store = self._store()
        try:
            location = await self._get(f"/api/tracking/trips/{segment(trip_id)}/location")
        except NotFound:
            return None
        except TriplineError as error:
            saved = store.get(trip_id) if error.transient else None
            if saved is None:
                raise
            return {**saved, "stale": True}
        store.save(trip_id, location, location.get("seq"))
        return location

    async def watch_upload(self, upload_id: str) -> AsyncIterator[dict[str, Any]]:
        """Yield the upload's status each time it changes, until verified, rejected or failed.
        Polls every ``poll_interval_s`` (``background_poll_interval_s`` in background mode);
        a transient failure is skipped, a permanent one raised."""
        last: Any = None
        while True:
            try:
                status = await self.upload_status(upload_id)
            except TriplineError as error:
                if not error.transient:
                    raise
            else:
                if status.get("status") != last:
                    last = status.get("status")
                    yield status
                if last in TERMINAL_UPLOAD_STATES:
                    return
            background = self.connectivity.background
            await self._sleep(
                self.config.background_poll_interval_s
                if background
                else self.config.poll_interval_s
            )

    # -- critical actions: on disk first, then sent in order ---------------------------------

    async def send_sos(
        self, trip_id: str, *, lat: float, lng: float, message: str | None = None
    ) -> Delivery:
        """Raise an SOS for the trip: sent now, or kept on disk and sent as soon as the
        platform can be reached, also after the app restarts (given up only after a day). An
        SOS cuts short the queue's backoff: it is tried again at once."""
        return await self._submit(
            urgent=True,
            action=actions.sos(trip_id, lat, lng, message, id=actions.new_id(), now=self._clock()),
        )

    async def change_status(self, trip_id: str, status: str) -> Delivery:
        """Move the trip to ``status`` (accepted, arrived, in_progress, completed, cancelled)."""
        return await self._submit(
            actions.trip_status(trip_id, status, id=actions.new_id(), now=self._clock())
        )

    async def send_locations(self, trip_id: str, points: Sequence[Mapping[str, Any]]) -> Delivery:
        """Send a driver's location points (``lat``, ``lng``, ``ts`` in epoch seconds,
        optional ``heading`` and ``speed``), oldest first, 1 to 100 per call."""
        return await self._submit(
            actions.locations(trip_id, points, id=actions.new_id(), now=self._clock())
        )

    async def complete_upload(self, upload_id: str) -> Delivery:
        """Tell the platform the file is in storage; it queues the document's checks."""
        return await self._submit(
            actions.upload_complete(upload_id, id=actions.new_id(), now=self._clock())
        )

    def on_outcome(self, callback: Callable[[Outcome], None]) -> None:
        """Call ``callback`` with each critical action's final outcome, including actions an
        earlier run of the app queued and this one sent. Register it before :meth:`start` to
        hear those; it runs on the event loop and should be quick."""
        self._callbacks.append(callback)
        if self._outbox is not None:
            self._outbox.on_outcome(callback)

    def outcome(self, action_id: str) -> Outcome | None:
        """How a critical action ended (kept a week), or ``None`` while it is still queued or
        when the id is unknown."""
        return self._started_outbox().outcome(action_id)

    def pending_actions(self) -> list[Action]:
        """The critical actions on disk that have not been applied yet, oldest first."""
        return self._started_outbox().pending()

    # -- live tracking -----------------------------------------------------------------------

    def subscribe(self, trip_id: str, *, critical: bool = False) -> TripSubscription:
        """A live subscription to the trip's events; use it with ``async with`` and iterate.
        ``critical`` subscriptions (an SOS in progress) stay open in background mode."""
        path = f"/ws/trips/{segment(trip_id)}"

        def url(since: int | None) -> str:
            query: dict[str, str | int] = {"token": self.token()}
            if since is not None:
                query["since"] = since
            return f"{self.transport.ws_url(path)}?{urlencode(query)}"

        subscription = TripSubscription(
            url=url,
            store=self._store(),
            trip_id=trip_id,
            backoff=self.config.subscription_backoff,
            rand=self._rand,
            sleep=self._sleep,
            critical=critical,
            on_close=self._subscriptions.discard,
            # The server leaves holes on purpose (a trip's driver is not sent its own locations;
            # a slow socket loses superseded ones) and closes the socket rather than lose a
            # status or SOS, so a hole is not a reason to reconnect.
            resync_on_gap=False,
        )
        self._subscriptions.add(subscription)
        if self.connectivity.background and not critical:
            subscription.pause()
        return subscription

    # -- internals ---------------------------------------------------------------------------

    async def _submit(self, action: Action, *, urgent: bool = False) -> Delivery:
        outbox = self._started_outbox()
        replayer = self._replayer
        if replayer is None:
            raise RuntimeError("the client is not started")
        future = outbox.submit(action)
        replayer.queued(urgent=urgent)
        if self.connectivity.online and not replayer.stalled.is_set():
            stalled = asyncio.ensure_future(replayer.stalled.wait())
            waits: set[asyncio.Future[Any]] = {future, stalled}
            try:
                await asyncio.wait(
                    waits, timeout=self.config.action_wait_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stalled.cancel()
        return Delivery(action, future)

    async def _send_action(self, action: Action) -> dict[str, Any] | None:
        slow = action.kind is ActionKind.UPLOAD_COMPLETE
        response = await self.transport.request(
            action.method,
            action.path,
            json_body=action.body,
            idempotency_key=action.id,
            timeout_s=self.config.slow_call_timeout_s if slow else None,
        )
        return response.body if isinstance(response.body, dict) else None

    async def _probe(self) -> bool:
        """Whether the platform answers: any answer of its own counts (a 503 ``down`` too, as
        the queue then learns the rest by itself); no answer, a redirect or a page that is not
        the platform's (a Wi-Fi sign-in) does not."""
        try:
            await self.transport.request(
                "GET", "/health", max_retries=0, timeout_s=5.0, authenticated=False
            )
        except (NetworkError, UnexpectedResponse):
            return False
        except TriplineError:
            return True
        return True

    def _store(self) -> LastKnownStore:
        if self._lastknown is None:
            raise RuntimeError("the client is not started: use `async with Tripline(...)`")
        return self._lastknown

    def _started_outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("the client is not started: use `async with Tripline(...)`")
        return self._outbox
