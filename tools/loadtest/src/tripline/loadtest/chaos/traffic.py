"""The chaos client's traffic, beside k6's background load: critical requests at a fixed
cadence whatever the answers (SOS, location posts), and writes that are retried as an app
retries them (trips moved to completed and paid, documents uploaded), each acknowledgement
recorded in the run's :class:`Log` by the id the platform answered with.

Critical requests are sent on a clock, each in its own task, so a hung platform meets the
same number of them as a healthy one (a client waiting on its last answer would send fewer
exactly when it matters). Writes are retried with the same ``Idempotency-Key`` until the
answer is final or their deadline passes, so a write the platform applied but did not answer
is sent again, and must not be applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from tripline.common.auth import Role
from tripline.loadtest.chaos.client import CALL_TIMEOUT_S, Answer, Api, Person, new_key
from tripline.loadtest.chaos.records import Attempt, CriticalKind, Log

# A few kilometres of a city centre, as the load profiles' city.
CENTRE = (52.51, 13.39)
STATUSES = ("accepted", "arrived", "in_progress", "completed")


@dataclass(frozen=True)
class Cadence:
    """How much the chaos client sends: one location a second from each of
    ``critical_trips`` drivers and an SOS every ``sos_every_s`` from their riders; a trip
    started every ``trip_every_s`` (four status changes ``step_pause_s`` apart, then its
    payment) and a document uploaded every ``upload_every_s``; a write is given up after
    ``write_deadline_s`` of retries."""

    critical_trips: int = 6
    sos_every_s: float = 1.0
    location_every_s: float = 1.0
    trip_every_s: float = 3.0
    upload_every_s: float = 6.0
    step_pause_s: float = 1.0
    write_deadline_s: float = 60.0


@dataclass(frozen=True)
class WatchedTrip:
    trip_id: str
    rider: Person
    driver: Person
    lat: float
    lng: float


class Traffic:
    """The client's traffic for one run: :meth:`setup`, :meth:`start`, then :meth:`stop`."""

    def __init__(
        self, api: Api, tag: str, log: Log, document: bytes, cadence: Cadence | None = None
    ) -> None:
        self.api = api
        self.tag = tag
        self.log = log
        self.document = document
        self.cadence = cadence or Cadence()
        self.trips: list[WatchedTrip] = []
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def setup(self) -> None:
        """Create the watched trips (requested by their riders, accepted by their drivers), all
        at once. Raises ``RuntimeError`` when the platform does not allow it within a minute."""
        self.trips = list(
            await asyncio.gather(*(self._watched(n) for n in range(self.cadence.critical_trips)))
        )

    async def _watched(self, n: int) -> WatchedTrip:
        rider = Person(f"{self.tag}-r{n}", Role.RIDER)
        driver = Person(f"{self.tag}-d{n}", Role.DRIVER)
        lat, lng = CENTRE[0] + 0.004 * n, CENTRE[1] + 0.003 * n
        created = await self.api.until_final(
            "POST", "/api/trips", rider, body=_trip_body(lat, lng), key=new_key(), deadline_s=60
        )
        if created.status != 201:
            raise RuntimeError(f"watched trip {n} not created: {created.status}")
        trip_id = str(created.body["id"])
        accepted = await self.api.until_final(
            "POST",
            f"/api/trips/{trip_id}/status",
            driver,
            body={"status": "accepted"},
            key=new_key(),
            deadline_s=60,
        )
        if accepted.status != 200:
            raise RuntimeError(f"watched trip {n} not accepted: {accepted.status}")
        return WatchedTrip(trip_id, rider, driver, lat, lng)

    def start(self) -> None:
        """Start every loop; they run until :meth:`stop`."""
        c = self.cadence
        for trip in self.trips:
            self._loops.append(
                asyncio.create_task(self._every(c.location_every_s, self._locate(trip)))
            )
        self._loops.append(asyncio.create_task(self._every(c.sos_every_s, self._sos_round())))
        self._loops.append(asyncio.create_task(self._every(c.trip_every_s, self._trip_round())))
        self._loops.append(asyncio.create_task(self._every(c.upload_every_s, self._upload_round())))

    async def stop(self, grace_s: float) -> None:
        """Send nothing new, then wait up to ``grace_s`` for calls and writes in flight (their
        answers are still recorded); what is left after that is cancelled and noted."""
        self._stopping.set()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=grace_s)
            for task in pending:
                task.cancel()
                self.log.note("a write still retrying when the traffic stopped was abandoned")
            await asyncio.gather(*pending, return_exceptions=True)

    async def _every(
        self, interval_s: float, make: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        # On a fixed clock: a slow answer never delays the next send.
        next_at = time.monotonic()
        while not self._stopping.is_set():
            task = asyncio.create_task(make())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            next_at += interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, next_at - time.monotonic()))

    # Critical: a location a second from every driver, an SOS from one rider after another.

    def _locate(self, trip: WatchedTrip) -> Callable[[], Coroutine[Any, Any, None]]:
        step = [0]

        async def send() -> None:
            step[0] += 1
            ts = round(time.time(), 3)
            point = {"lat": trip.lat + 0.00002 * step[0], "lng": trip.lng, "ts": ts}
            answer = await self._critical(
                "location",
                "/api/tracking/location",
                trip.driver,
                {"trip_id": trip.trip_id, "points": [point]},
                lambda body: isinstance(body, dict) and body.get("accepted") == 1,
            )
            if answer:
                self.log.accepted.points.add((trip.trip_id, ts))

        return send

    def _sos_round(self) -> Callable[[], Coroutine[Any, Any, None]]:
        count = [0]

        async def send() -> None:
            trip = self.trips[count[0] % len(self.trips)]
            message = f"{self.tag} sos {count[0]}"
            count[0] += 1
            self.log.accepted.sos_sent.add(message)
            body = {"lat": trip.lat, "lng": trip.lng, "message": message}
            answer = await self._critical(
                "sos",
                f"/api/trips/{trip.trip_id}/sos",
                trip.rider,
                body,
                lambda body: isinstance(body, dict) and isinstance(body.get("id"), str),
            )
            if answer is not None:
                self.log.accepted.sos[str(answer["id"])] = message

        return send

    async def _critical(
        self,
        kind: CriticalKind,
        path: str,
        who: Person,
        body: dict[str, Any],
        accepted: Callable[[Any], bool],
    ) -> Any:
        """One critical request, recorded; returns its body when accepted (202), else None."""
        sent_at = self.log.now()
        answer = await self.api.call("POST", path, who, body=body, key=new_key())
        ok = answer.status == 202 and accepted(answer.body)
        self.log.attempts.append(Attempt(kind, sent_at, answer.latency_s, answer.status, ok))
        if kind == "sos" and answer.instance:
            self.log.answered_by(answer.instance)
        return answer.body if ok else None

    # Writes: trips requested, moved to completed and paid; documents uploaded.

    def _trip_round(self) -> Callable[[], Coroutine[Any, Any, None]]:
        count = [0]

        async def run() -> None:
            count[0] += 1
            await self._trip(count[0])

        return run

    async def _trip(self, n: int) -> None:
        rider = Person(f"{self.tag}-tr{n}", Role.RIDER)
        driver = Person(f"{self.tag}-td{n}", Role.DRIVER)
        lat, lng = CENTRE[0] - 0.0001 * n, CENTRE[1] + 0.0001 * n
        created = await self._write("POST", "/api/trips", rider, _trip_body(lat, lng), new_key())
        # 201 made, or 202 queued for a database that is away (its id already given).
        if created.status not in (201, 202) or not isinstance(created.body, dict):
            self._gave_up("trip request", created)
            return
        trip_id = str(created.body["id"])
        self.log.accepted.trips.add(trip_id)
        for status in STATUSES:
            await asyncio.sleep(self.cadence.step_pause_s)
            key = new_key()
            path = f"/api/trips/{trip_id}/status"
            moved = await self._write("POST", path, driver, {"status": status}, key)
            if moved.status not in (200, 202):
                self._gave_up(f"status {status}", moved)
                return
            # The event id core records in the trip's history (pending_writes.new_write_id).
            self.log.accepted.status_events.setdefault(trip_id, []).append(f"{driver.sub}:{key}")
        await asyncio.sleep(self.cadence.step_pause_s)
        order = {"amount_cents": 1850, "currency": "EUR", "method": "card"}
        paid = await self._write("POST", f"/api/trips/{trip_id}/payment", rider, order, new_key())
        if paid.status not in (200, 202):
            self._gave_up("payment", paid)
            return
        self.log.accepted.payments.add(trip_id)

    def _upload_round(self) -> Callable[[], Coroutine[Any, Any, None]]:
        count = [0]

        async def run() -> None:
            count[0] += 1
            await self._upload(count[0])

        return run

    async def _upload(self, n: int) -> None:
        driver = Person(f"{self.tag}-ud{n}", Role.DRIVER)
        body = {
            "doc_type": "license",
            "filename": "license.jpg",
            "content_type": "image/jpeg",
            "size_bytes": len(self.document),
        }
        presigned = await self._write("POST", "/api/uploads", driver, body, new_key())
        if presigned.status != 201:
            self._gave_up("presign", presigned)
            return
        upload_id = str(presigned.body["upload_id"])
        self.log.presigned.add(upload_id)
        if not await self._retry(lambda: self._send_to_storage(presigned.body)):
            self.log.note("upload: the document never reached storage")
            return
        path = f"/api/uploads/{upload_id}/complete"
        done = await self._write("POST", path, driver, None, new_key())
        if done.status != 202:
            self._gave_up("upload completion", done)
            return
        self.log.accepted.uploads.add(upload_id)

    async def _send_to_storage(self, presigned: dict[str, Any]) -> bool:
        try:
            answer = await self.api.http.post(
                presigned["url"],
                data=presigned["fields"],
                files={"file": ("license.jpg", self.document, "image/jpeg")},
                timeout=CALL_TIMEOUT_S,
            )
        except httpx.HTTPError:
            return False
        return answer.status_code in (200, 201, 204)

    async def _retry(self, attempt: Callable[[], Awaitable[bool]]) -> bool:
        give_up = time.monotonic() + self.cadence.write_deadline_s
        while not await attempt():
            if time.monotonic() + 1 > give_up:
                return False
            await asyncio.sleep(1)
        return True

    async def _write(
        self, method: str, path: str, who: Person, body: dict[str, Any] | None, key: str
    ) -> Answer:
        return await self.api.until_final(
            method, path, who, body=body, key=key, deadline_s=self.cadence.write_deadline_s
        )

    def _gave_up(self, what: str, answer: Answer) -> None:
        self.log.note(f"{what}: gave up, last answer {answer.status}")


def _trip_body(lat: float, lng: float) -> dict[str, Any]:
    return {
        "origin": {"lat": lat, "lng": lng},
        "destination": {"lat": lat + 0.01, "lng": lng + 0.01},
    }
