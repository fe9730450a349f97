"""The demo's rider: requests a trip and follows it live, puts the app in the background for a
while, and raises an SOS from inside a tunnel, where there is no signal at all."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

from tripline_client import TripEvent, TriplineError, TripSubscription
from tripline_client.demo.phone import Phone

ORIGIN = (52.52, 13.405)
DESTINATION = (52.53, 13.42)
SOS_MESSAGE = "The driver left the route and will not stop."
REQUEST_TAPS = 3
"""How often the rider taps "Request" before giving up, when the network fails the request."""


class Rider:
    """Watches the trip's events and reacts to them. :attr:`events` counts the numbered events
    that reached the rider by type, :attr:`missing` the numbers skipped between two of them."""

    def __init__(
        self,
        phone: Phone,
        *,
        tick_s: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.phone = phone
        self.events: Counter[str] = Counter()
        self.missing = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.reconnects = 0
        self._tick_s = tick_s
        self._sleep = sleep
        self._seen: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def request_trip(self) -> str:
        """Request a trip from :data:`ORIGIN` to :data:`DESTINATION` and return its id.

        A request the network loses is tapped again, up to :data:`REQUEST_TAPS` times; raises
        the last :class:`TriplineError` when none succeeds or the platform refuses.
        """
        taps = 0
        while True:
            taps += 1
            try:
                trip = await self.phone.client.create_trip(ORIGIN, DESTINATION)
            except TriplineError as error:
                if not error.transient or taps == REQUEST_TAPS:
                    raise
                self.phone.say(f"request failed: {error.user_message} Tapping again.")
                await self._sleep(self._tick_s)
            else:
                trip_id = str(trip["id"])
                self.phone.say(f"requested trip {trip_id}")
                return trip_id

    async def ride(self, trip_id: str) -> None:
        """Follow the trip until it is completed and the rider's own SOS has come back as an
        event. When the subscription ends with a :class:`TriplineError`, raises it in an
        ``ExceptionGroup``."""
        async with self.phone.client.subscribe(trip_id) as trip:
            try:
                async with asyncio.TaskGroup() as group:
                    watcher = group.create_task(self._watch(trip))
                    await self._seen["accepted"].wait()
                    await self._background_break(trip)
                    await self._seen["in_progress"].wait()
                    sos_applied = await self._sos_in_tunnel(trip_id, trip)
                    await self._seen["completed"].wait()
                    if sos_applied:
                        await self._seen["sos"].wait()
                    watcher.cancel()
            finally:
                self.reconnects = trip.reconnects

    async def _watch(self, trip: TripSubscription) -> None:
        async for event in trip:
            self._count(event)
            self.phone.say(f"event #{event.seq}: {_describe(event)}")
            status = event.data.get("status")
            if isinstance(status, str):
                self._seen[status].set()
            if event.type == "sos":
                self._seen["sos"].set()

    def _count(self, event: TripEvent) -> None:
        if event.seq is None:
            return
        self.events[event.type] += 1
        if self.last_seq is not None and event.seq > self.last_seq + 1:
            self.missing += event.seq - self.last_seq - 1
        self.first_seq = event.seq if self.first_seq is None else self.first_seq
        self.last_seq = event.seq

    async def _background_break(self, trip: TripSubscription) -> None:
        # The live view pauses in the background; back in front it resumes from the last event
        # seen, and the platform replays what the rider missed meanwhile.
        self.phone.say("puts the phone away: the app goes to the background")
        self.phone.client.set_background(True)
        await self._sleep(3 * self._tick_s)
        self.phone.client.set_background(False)
        self.phone.say(f"opens the app again: catching up after event #{trip.last_seq}")

    async def _sos_in_tunnel(self, trip_id: str, trip: TripSubscription) -> bool:
        """Raise the SOS with no signal, leave the tunnel, and return whether it was applied."""
        lat, lng = ORIGIN
        if (known := trip.last_known) is not None:
            lat, lng = float(known["lat"]), float(known["lng"])
        with self.phone.network.tunnel():
            # The flaky network carries the HTTP calls only, so the tunnel cuts the live
            # socket by hand; it reconnects with ``since`` when the signal is back.
            trip.pause()
            self.phone.say("enters a tunnel: no signal")
            delivery = await self.phone.act(
                "SOS", self.phone.client.send_sos(trip_id, lat=lat, lng=lng, message=SOS_MESSAGE)
            )
            await self._sleep(3 * self._tick_s)
        self.phone.say("leaves the tunnel: signal is back")
        trip.resume()
        # The host app's hook for the phone's "network is back" notification: look now.
        self.phone.client.report_network(True)
        outcome = await delivery.outcome()
        return outcome.applied


def _describe(event: TripEvent) -> str:
    data = event.data
    match event.type:
        case "location":
            return f"location {data.get('lat')}, {data.get('lng')}"
        case "status":
            return f"status {data.get('status')}"
        case "sos":
            return f"SOS raised: {data.get('message')}"
        case "snapshot":
            return f"snapshot, trip {data.get('status') or 'status unknown'}"
        case _:
            return event.type
