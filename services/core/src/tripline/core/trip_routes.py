"""``/api/trips``: request a trip, read it, move it through its states, and search open trips.

A trip is visible to its rider, its driver and admins; to anyone else it does not exist (404,
not 403: an outsider learns nothing). A status change is a compare-and-set in MongoDB, then the
caches of every replica forget the trip and the change is published on the trip's channel.
While MongoDB is away, reads answer from the last known copy (marked stale), and trip requests
and status changes are queued (:mod:`tripline.core.pending_writes`), answered 202 ``pending``.
A queued trip request already has its id (``Location``), its parties record (so its rider may
raise an SOS, its driver accept it and tracking admit them) and a last known copy (so reading
it answers, marked stale); the trip is inserted when MongoDB answers again. Until then it is
not in searches: drivers find it once it is stored.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Identity, Role
from tripline.common.channels import publish_event, read_parties, record_parties
from tripline.common.errors import Conflict, DependencyUnavailable, NotFound
from tripline.common.logs import get_logger
from tripline.common.validation import parse_body, parse_query
from tripline.core.context import Core, core_of
from tripline.core.models import SearchQuery, StatusChange, TripCreate, geo_point, trip_view
from tripline.core.pending_writes import Queued, Write, new_write_id
from tripline.core.reads import Read, read_through
from tripline.core.trips import TripStatus, is_party, plan_move

log = get_logger(__name__)

STATUS_WRITE = "status"
CREATE_WRITE = "trip"
# Searches within about a kilometre of each other share one cached answer.
SEARCH_GRID_DEGREES = 0.01


def new_trip_id(identity: Identity, idempotency_key: str | None) -> str:
    """A fresh id, or, for a replayed request, the id its first attempt got."""
    if not idempotency_key:
        return uuid.uuid4().hex
    digest = hashlib.sha256(f"{identity.user_id}\x00{idempotency_key}".encode())
    return digest.hexdigest()[:32]


async def visible_trip(core: Core, identity: Identity, trip_id: str) -> Read:
    """The trip as the caller may see it (cached 30 s); raises NotFound for outsiders too."""

    async def from_database() -> dict[str, Any] | None:
        document = await core.trips.get(trip_id)
        return trip_view(document) if document is not None else None

    read = await read_through(
        core.trips_cache, core.stale, trip_id, from_database, ttl_s=core.settings.trip_cache_ttl_s
    )
    trip = read.value
    if not isinstance(trip, dict) or not is_party(
        identity, rider_id=trip["rider_id"], driver_id=trip["driver_id"]
    ):
        raise NotFound(f"no trip {trip_id}")
    return read


async def create_trip(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    body = await parse_body(request, TripCreate)
    trip_id = new_trip_id(identity, request.headers.get("idempotency-key"))
    write = Write(
        kind=CREATE_WRITE,
        record=f"trip:{trip_id}",
        write_id=trip_id,
        payload={
            "trip_id": trip_id,
            "rider_id": identity.user_id,
            "origin": geo_point(body.origin),
            "destination": geo_point(body.destination),
        },
    )
    location = {"Location": f"/api/trips/{trip_id}"}
    created = await core.writes.run_or_queue(write, lambda: create_now(core, write.payload))
    if isinstance(created, Queued):
        await remember_queued_trip(core, write.payload)
        return JSONResponse({**created.body(), "id": trip_id}, status_code=202, headers=location)
    return JSONResponse(created, status_code=201, headers=location)


async def create_now(core: Core, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Insert the requested trip (idempotent per id) and share it; returns its view.

    Raises :class:`Conflict` when the id belongs to another rider's trip,
    :class:`DependencyUnavailable` when MongoDB does not answer.
    """
    document = await core.trips.create(
        trip_id=payload["trip_id"],
        rider_id=payload["rider_id"],
        origin=payload["origin"],
        destination=payload["destination"],
    )
    trip = trip_view(document)
    await _share_parties(core, trip)
    await core.stale.keep(core.trips_cache.namespace, trip["id"], trip)
    return trip


async def remember_queued_trip(core: Core, payload: Mapping[str, Any]) -> None:
    """Make a queued trip known where it can be without MongoDB: its parties record and its
    last known copy, as it will be stored (times are the request's; the stored ones are the
    insert's)."""
    now = datetime.now(UTC)
    trip = trip_view(
        {
            "_id": payload["trip_id"],
            "rider_id": payload["rider_id"],
            "driver_id": None,
            "status": TripStatus.REQUESTED.value,
            "origin": payload["origin"],
            "destination": payload["destination"],
            "created_at": now,
            "updated_at": now,
        }
    )
    await _share_parties(core, trip)
    await core.stale.keep(core.trips_cache.namespace, trip["id"], trip)


async def apply_create_write(core: Core, write: Write) -> None:
    """Replay a queued trip request (see :mod:`tripline.core.pending_writes`)."""
    await create_now(core, write.payload)


async def get_trip(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    read = await visible_trip(core, identity, request.path_params["trip_id"])
    return JSONResponse(read.value, headers=read.headers())


async def change_status(request: Request) -> Response:
    core = core_of(request)
    identity = await core.identity(request)
    trip_id = request.path_params["trip_id"]
    body = await parse_body(request, StatusChange)
    event_id = new_write_id(identity.user_id, request.headers.get("idempotency-key"))
    write = Write(
        kind=STATUS_WRITE,
        record=f"trip:{trip_id}",
        write_id=event_id,
        payload={
            "trip_id": trip_id,
            "status": body.status.value,
            "user_id": identity.user_id,
            "role": identity.role.value,
        },
    )
    moved = await core.writes.run_or_queue(
        write,
        lambda: move_trip(core, identity, trip_id, body.status, event_id=event_id),
        check=lambda: may_queue_move(core, identity, trip_id),
    )
    if isinstance(moved, Queued):
        return JSONResponse(moved.body(), status_code=202)
    return JSONResponse(moved)


async def move_trip(
    core: Core, identity: Identity, trip_id: str, target: TripStatus, *, event_id: str
) -> dict[str, Any]:
    """Move the trip to ``target`` for ``identity``, once per ``event_id``; returns the trip.

    Then every replica forgets the trip, tracking's parties record is updated and the change is
    published. Raises :class:`NotFound` (no such trip, or an outsider), :class:`Conflict` (an
    illegal move, or another move won), :class:`Forbidden` (a party who may not make this move),
    :class:`DependencyUnavailable` when MongoDB does not answer.
    """
    document = await core.trips.get(trip_id)
    if document is None:
        raise NotFound(f"no trip {trip_id}")
    if any(entry.get("event_id") == event_id for entry in document.get("history", ())):
        # A replay of a change already made: the same answer, nothing applied twice.
        return trip_view(document)
    current = trip_view(document)
    accepting = target is TripStatus.ACCEPTED and identity.role is Role.DRIVER
    if not accepting and not is_party(
        identity, rider_id=current["rider_id"], driver_id=current["driver_id"]
    ):
        raise NotFound(f"no trip {trip_id}")
    move = plan_move(
        status=TripStatus(current["status"]),
        target=target,
        actor=identity,
        rider_id=current["rider_id"],
        driver_id=current["driver_id"],
    )
    updated = await core.trips.apply_move(
        trip_id,
        from_status=move.from_status.value,
        to_status=move.to_status.value,
        assign_driver=move.assign_driver,
        event_id=event_id,
        by=identity.user_id,
    )
    if updated is None:
        raise Conflict(f"trip {trip_id} changed meanwhile; read it again and retry")
    trip = trip_view(updated)
    await core.trips_cache.invalidate(trip_id)
    await core.stale.keep(core.trips_cache.namespace, trip_id, trip)
    await _share_parties(core, trip)
    await _announce(core, trip)
    return trip


async def may_queue_move(core: Core, identity: Identity, trip_id: str) -> None:
    """What can be checked of a status change without MongoDB, before it is queued.

    The trip must be known from tracking's parties record and the caller be one of its parties,
    or a driver (who may be accepting it). Whether the move is legal is decided when it is
    replayed: earlier queued moves may not be applied yet. Raises :class:`NotFound`, or
    :class:`DependencyUnavailable` when the record cannot be read.
    """
    try:
        recorded = await read_parties(core.redis, trip_id)
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("mongodb", "the trip cannot be read right now") from exc
    if recorded is None or recorded["rider_id"] is None:
        raise NotFound(f"no trip {trip_id}")
    party = is_party(identity, rider_id=recorded["rider_id"], driver_id=recorded["driver_id"])
    if not (party or identity.role is Role.DRIVER):
        raise NotFound(f"no trip {trip_id}")


async def apply_status_write(core: Core, write: Write) -> None:
    """Replay a queued status change (see :mod:`tripline.core.pending_writes`)."""
    payload = write.payload
    identity = Identity(user_id=payload["user_id"], role=Role(payload["role"]))
    await move_trip(
        core, identity, payload["trip_id"], TripStatus(payload["status"]), event_id=write.write_id
    )


async def search(request: Request) -> Response:
    core = core_of(request)
    await core.identity(request)
    query = parse_query(request.query_params, SearchQuery)
    key = search_cache_key(query)

    async def from_database() -> dict[str, Any]:
        documents, cursor = await core.trips.search_open(
            lat=query.lat,
            lng=query.lng,
            radius_km=query.radius_km,
            limit=query.limit,
            cursor=query.cursor,
        )
        return {"items": [trip_view(document) for document in documents], "next": cursor}

    read = await read_through(
        core.search_cache, core.stale, key, from_database, ttl_s=core.settings.search_cache_ttl_s
    )
    return JSONResponse(read.value, headers=read.headers())


def search_cache_key(query: SearchQuery) -> str:
    """Nearby searches share a key: the point snapped to a grid of about a kilometre."""
    lat = math.floor(query.lat / SEARCH_GRID_DEGREES)
    lng = math.floor(query.lng / SEARCH_GRID_DEGREES)
    return f"{lat}:{lng}:{query.radius_km:g}:{query.limit}:{query.cursor or ''}"


async def _share_parties(core: Core, trip: dict[str, Any]) -> None:
    # Tracking checks watchers against this record; the internal endpoint below is its
    # fallback, so a Redis failure here costs a database read there, not a refusal.
    try:
        await record_parties(
            core.redis,
            trip["id"],
            rider_id=trip["rider_id"],
            driver_id=trip["driver_id"],
            status=trip["status"],
        )
    except (RedisError, OSError) as exc:
        log.warning("trip parties not recorded", trip_id=trip["id"], error=repr(exc))


async def _announce(core: Core, trip: dict[str, Any]) -> None:
    # The change is already in the database: a subscriber that misses it reads it on its next
    # snapshot, so a Redis failure is logged, not raised.
    try:
        await publish_event(core.redis, trip["id"], {"type": "status", "status": trip["status"]})
    except (RedisError, OSError) as exc:
        log.warning("status change not published", trip_id=trip["id"], error=repr(exc))


async def parties(request: Request) -> Response:
    """Internal: who may watch the trip (tracking's fallback when the Redis record is gone).
    Answers the caller's own question only: a party or an admin, else 404."""
    core = core_of(request)
    identity = await core.identity(request)
    trip_id = request.path_params["trip_id"]
    recorded = await _recorded_parties(core, trip_id)
    if recorded is None:
        trip = (await visible_trip(core, identity, trip_id)).value
        if not isinstance(trip, dict):
            raise NotFound(f"no trip {trip_id}")
        recorded = {k: trip[k] for k in ("rider_id", "driver_id", "status")}
    rider_id, driver_id = recorded["rider_id"], recorded["driver_id"]
    if rider_id is None or not is_party(identity, rider_id=rider_id, driver_id=driver_id):
        raise NotFound(f"no trip {trip_id}")
    return JSONResponse({"trip_id": trip_id, **recorded})


async def _recorded_parties(core: Core, trip_id: str) -> dict[str, str | None] | None:
    try:
        return await read_parties(core.redis, trip_id)
    except (RedisError, OSError):
        return None


ROUTES = [
    Route("/api/trips", create_trip, methods=["POST"]),
    Route("/api/trips/search", search, methods=["GET"]),
    Route("/api/trips/{trip_id}", get_trip, methods=["GET"]),
    Route("/api/trips/{trip_id}/status", change_status, methods=["POST"]),
    Route("/internal/trips/{trip_id}/parties", parties, methods=["GET"]),
]
