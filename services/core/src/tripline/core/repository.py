"""The core service's MongoDB records: trips and user profiles.

Both repositories translate pymongo at this boundary, so callers only ever see the project's
error tree: a database that does not answer (no server to select, a dropped connection, a
timeout) becomes :class:`~tripline.common.errors.DependencyUnavailable`, a duplicate key is
resolved or becomes :class:`~tripline.common.errors.Conflict`. Any other ``PyMongoError`` (an
invalid command or document) is a bug and propagates unchanged.

Statuses are plain strings here (``"requested"`` ... ``"cancelled"``); which moves are allowed
is decided by the caller, the repository only makes each move atomic and idempotent.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, GEOSPHERE, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tripline.common.errors import Conflict, ValidationFailed
from tripline.common.guard import DependencyGuard
from tripline.common.mongo import Document, read_heavy, translate_errors

Clock = Callable[[], datetime]

TRIPS = "trips"
USERS = "users"
OPEN_STATUS = "requested"
HISTORY_LIMIT = 50
MAX_CURSOR_LENGTH = 1024
UPSERT_ATTEMPTS = 3
# Fields a profile update may not set: identity and bookkeeping belong to the repository.
RESERVED_PROFILE_FIELDS = frozenset({"_id", "role", "created_at", "updated_at"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def stored_time(clock: Clock) -> datetime:
    """The clock's time as BSON keeps it (milliseconds), so what a write returns equals what a
    later read finds."""
    now = clock()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def point(*, lat: float, lng: float) -> Document:
    """A GeoJSON point; note GeoJSON's order, longitude first."""
    return {"type": "Point", "coordinates": [lng, lat]}


def check_coordinates(lat: float, lng: float, *, field: str) -> None:
    """Raise :class:`ValidationFailed` unless ``lat``/``lng`` are finite and on the globe."""
    if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValidationFailed(f"{field} is not a valid position (lat, lng)")


def check_point(value: Mapping[str, Any], *, field: str) -> Document:
    """Return ``value`` as a plain GeoJSON point, or raise :class:`ValidationFailed`.

    A 2dsphere index refuses the whole insert on a malformed point, so it is checked here where
    the caller can still be told which field is wrong.
    """
    coordinates = value.get("coordinates")
    if (
        value.get("type") != "Point"
        or not isinstance(coordinates, list | tuple)
        or len(coordinates) != 2
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates)
    ):
        raise ValidationFailed(f"{field} must be a GeoJSON point")
    lng, lat = float(coordinates[0]), float(coordinates[1])
    check_coordinates(lat, lng, field=field)
    return point(lat=lat, lng=lng)


def encode_cursor(distance_m: float, trip_id: str) -> str:
    """The opaque cursor that continues a search strictly after ``(distance_m, trip_id)``."""
    raw = json.dumps({"d": distance_m, "id": trip_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Return the ``(distance_m, trip_id)`` a cursor continues after.

    Raises :class:`ValidationFailed` for anything :func:`encode_cursor` did not produce.
    """
    malformed = ValidationFailed("cursor is malformed; start again without one")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise malformed
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except ValueError as exc:
        raise malformed from exc
    if not isinstance(data, dict) or data.keys() != {"d", "id"}:
        raise malformed
    distance, trip_id = data["d"], data["id"]
    if (
        not isinstance(distance, int | float)
        or isinstance(distance, bool)
        or not math.isfinite(distance)
        or distance < 0
        or not isinstance(trip_id, str)
    ):
        raise malformed
    return float(distance), trip_id


def open_trips_pipeline(
    *, lat: float, lng: float, radius_km: float, limit: int, after: tuple[float, str] | None
) -> list[Document]:
    """The aggregation behind :meth:`TripRepository.search_open`: up to ``limit`` open trips
    within ``radius_km``, ordered by ``(distance_m, _id)``, strictly after ``after``."""
    near: Document = {
        "near": point(lat=lat, lng=lng),
        "distanceField": "distance_m",
        "maxDistance": radius_km * 1000,
        "spherical": True,
        "query": {"status": OPEN_STATUS},
        "key": "origin",
    }
    pipeline: list[Document] = [{"$geoNear": near}]
    if after is not None:
        distance, trip_id = after
        # minDistance lets the index skip earlier pages; it is inclusive, so ties at exactly
        # the last distance are then ordered by id.
        near["minDistance"] = distance
        farther = {"distance_m": {"$gt": distance}}
        tied_after = {"distance_m": distance, "_id": {"$gt": trip_id}}
        pipeline.append({"$match": {"$or": [farther, tied_after]}})
    pipeline += [{"$sort": {"distance_m": 1, "_id": 1}}, {"$limit": limit}]
    return pipeline


class TripRepository:
    """Trips in the ``trips`` collection, keyed by trip id.

    Every method may raise :class:`DependencyUnavailable` when MongoDB does not answer (at
    once, with a ``guard`` that has seen it hang).
    """

    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        clock: Clock = utc_now,
        history_limit: int = HISTORY_LIMIT,
        guard: DependencyGuard | None = None,
    ) -> None:
        self._guard = guard
        self._trips: AsyncCollection[Document] = db[TRIPS]
        self._search: AsyncCollection[Document] = read_heavy(db)[TRIPS]
        self._clock = clock
        self._history_limit = history_limit

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries need; safe to call again and from every replica."""
        indexes = [
            # The version is spelt out because an index spec that differs from the stored one,
            # even by a default, is refused as a conflict by some servers.
            IndexModel(
                [("origin", GEOSPHERE)], name="origin_2dsphere", **{"2dsphereIndexVersion": 3}
            ),
            IndexModel([("status", ASCENDING), ("created_at", ASCENDING)], name="status_created"),
            IndexModel([("rider_id", ASCENDING)], name="rider_id"),
            IndexModel([("driver_id", ASCENDING)], name="driver_id"),
        ]
        with translate_errors(self._guard):
            await self._trips.create_indexes(indexes)

    async def create(
        self,
        *,
        trip_id: str,
        rider_id: str,
        origin: Mapping[str, Any],
        destination: Mapping[str, Any],
    ) -> Document:
        """Insert a requested trip with no driver and return it.

        Idempotent per ``trip_id``: a replay by the same rider returns the stored trip as it is
        now. Raises :class:`ValidationFailed` when ``origin`` or ``destination`` is not a GeoJSON
        point, :class:`Conflict` when ``trip_id`` belongs to another rider.
        """
        now = stored_time(self._clock)
        trip: Document = {
            "_id": trip_id,
            "rider_id": rider_id,
            "driver_id": None,
            "status": OPEN_STATUS,
            "origin": check_point(origin, field="origin"),
            "destination": check_point(destination, field="destination"),
            "history": [],
            "created_at": now,
            "updated_at": now,
        }
        with translate_errors(self._guard):
            try:
                await self._trips.insert_one(trip)
            except DuplicateKeyError:
                existing = await self._trips.find_one({"_id": trip_id})
            else:
                return trip
        if existing is None or existing["rider_id"] != rider_id:
            raise Conflict(f"trip {trip_id} already exists")
        return existing

    async def get(self, trip_id: str) -> Document | None:
        """The trip as the primary has it, or None when there is none."""
        with translate_errors(self._guard):
            return await self._trips.find_one({"_id": trip_id})

    async def apply_move(
        self,
        trip_id: str,
        *,
        from_status: str,
        to_status: str,
        assign_driver: str | None,
        event_id: str,
        by: str | None = None,
    ) -> Document | None:
        """Move the trip from ``from_status`` to ``to_status`` atomically; return it afterwards.

        With ``assign_driver`` the move also takes the trip's free driver seat. The move is
        recorded in the trip's bounded ``history`` as ``{event_id, from, to, at, by}``.

        Returns None when the trip is missing or the precondition no longer holds (another move
        or driver won): the caller answers 409. Idempotent per ``event_id``: when that event is
        already in the history the trip is returned as it is, untouched, so a replayed write
        neither fails nor applies twice.
        """
        now = stored_time(self._clock)
        condition: Document = {
            "_id": trip_id,
            "status": from_status,
            "history.event_id": {"$ne": event_id},
        }
        changes: Document = {"status": to_status, "updated_at": now}
        if assign_driver is not None:
            condition["driver_id"] = None
            changes["driver_id"] = assign_driver
        entry = {"event_id": event_id, "from": from_status, "to": to_status, "at": now, "by": by}
        # Trimming the history cannot let an old event apply twice: statuses only move
        # forward, so the status it started from never comes back.
        update = {
            "$set": changes,
            "$push": {"history": {"$each": [entry], "$slice": -self._history_limit}},
        }
        with translate_errors(self._guard):
            moved = await self._trips.find_one_and_update(
                condition, update, return_document=ReturnDocument.AFTER
            )
            if moved is not None:
                return moved
            return await self._trips.find_one({"_id": trip_id, "history.event_id": event_id})

    async def search_open(
        self,
        *,
        lat: float,
        lng: float,
        radius_km: float,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Document], str | None]:
        """Trips waiting for a driver within ``radius_km`` of the point, nearest first.

        Returns one page (each trip carries ``distance_m``) and the cursor of the next page, or
        None on the last one. Pages follow ``(distance_m, _id)`` order, so a trip that did not
        move is neither repeated nor skipped. Reads may come from a secondary. Raises
        :class:`ValidationFailed` for a malformed cursor or out-of-range arguments.
        """
        check_coordinates(lat, lng, field="search position")
        if not (math.isfinite(radius_km) and radius_km > 0):
            raise ValidationFailed("radius_km must be a positive number")
        if limit < 1:
            raise ValidationFailed("limit must be at least 1")
        after = decode_cursor(cursor) if cursor is not None else None
        # One extra trip tells whether a next page exists without a second query.
        pipeline = open_trips_pipeline(
            lat=lat, lng=lng, radius_km=radius_km, limit=limit + 1, after=after
        )
        with translate_errors(self._guard):
            found = await (await self._search.aggregate(pipeline)).to_list()
        if len(found) <= limit:
            return found, None
        page = found[:limit]
        last = page[-1]
        return page, encode_cursor(last["distance_m"], last["_id"])


class UserRepository:
    """User profiles in the ``users`` collection, keyed by the token's subject.

    Every method may raise :class:`DependencyUnavailable` when MongoDB does not answer.
    """

    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        clock: Clock = utc_now,
        guard: DependencyGuard | None = None,
    ) -> None:
        self._guard = guard
        self._users: AsyncCollection[Document] = db[USERS]
        self._others: AsyncCollection[Document] = read_heavy(db)[USERS]
        self._clock = clock

    async def get(self, user_id: str, *, stale_ok: bool = False) -> Document | None:
        """The profile, or None. ``stale_ok`` (other people's profiles) may read a secondary."""
        users = self._others if stale_ok else self._users
        with translate_errors(self._guard):
            return await users.find_one({"_id": user_id})

    async def update_profile(
        self, user_id: str, *, role: str, changes: Mapping[str, Any]
    ) -> Document:
        """Set ``changes`` on the profile, creating it with ``role`` if it is new; return it.

        Raises :class:`ValidationFailed` when a change names a reserved field (``_id``, ``role``,
        ``created_at``, ``updated_at``) or is not a plain top-level field name.
        """
        for name in changes:
            if name in RESERVED_PROFILE_FIELDS or not name or name.startswith("$") or "." in name:
                raise ValidationFailed(f"profile field {name!r} cannot be changed")
        now = stored_time(self._clock)
        update = {
            "$set": {**changes, "updated_at": now},
            "$setOnInsert": {"role": role, "created_at": now},
        }
        with translate_errors(self._guard):
            for _ in range(UPSERT_ATTEMPTS):
                updated = await self._upsert(user_id, update)
                if updated is not None:
                    return updated
        raise RuntimeError(f"upsert of user {user_id} returned no document")

    async def _upsert(self, user_id: str, update: Mapping[str, Any]) -> Document | None:
        """One upsert; None when it lost a race to insert the same profile.

        MongoDB reports the lost race as a duplicate key, SecantusDB by returning no document;
        either way the next attempt finds the winner's document and updates it.
        """
        try:
            return await self._users.find_one_and_update(
                {"_id": user_id}, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            return None
