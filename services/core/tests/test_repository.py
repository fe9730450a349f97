from __future__ import annotations

import asyncio
import base64
import itertools
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from tripline.common.errors import Conflict, DependencyUnavailable, ValidationFailed
from tripline.common.mongo import Document, database, open_mongo
from tripline.core.repository import (
    TripRepository,
    UserRepository,
    decode_cursor,
    encode_cursor,
    point,
)
from tripline.core.settings import CoreSettings
from tripline.devstack.harness import scaled
from tripline.devstack.ports import free_port

pytestmark = pytest.mark.integration

DB_NAME = f"core_repository_{uuid.uuid4().hex[:8]}"
# The Earth radius MongoDB's spherical distances use, so seeded distances are known exactly.
EARTH_RADIUS_M = 6_378_100
CENTRE = (48.8566, 2.3522)
HERE = point(lat=CENTRE[0], lng=CENTRE[1])
THERE = point(lat=48.8738, lng=2.2950)


class StepClock:
    """A clock that moves only when told, for timestamps a test can predict."""

    def __init__(self) -> None:
        self.now = datetime(2030, 5, 17, 8, 30, 0, 123_456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def at_distance(distance_m: float, bearing_deg: float) -> Document:
    """The point ``distance_m`` from CENTRE along ``bearing_deg`` on MongoDB's sphere."""
    lat1, lng1 = math.radians(CENTRE[0]), math.radians(CENTRE[1])
    angle, bearing = distance_m / EARTH_RADIUS_M, math.radians(bearing_deg)
    lat2 = math.asin(
        math.sin(lat1) * math.cos(angle) + math.cos(lat1) * math.sin(angle) * math.cos(bearing)
    )
    lng2 = lng1 + math.atan2(
        math.sin(bearing) * math.sin(angle) * math.cos(lat1),
        math.cos(angle) - math.sin(lat1) * math.sin(lat2),
    )
    return point(lat=math.degrees(lat2), lng=math.degrees(lng2))


@pytest.fixture
async def db(settings_for: Callable[..., Any]) -> AsyncIterator[AsyncDatabase[Document]]:
    settings: CoreSettings = settings_for(CoreSettings, mongo_db=DB_NAME)
    async with open_mongo(settings) as client:
        yield database(client, settings)
        await client.drop_database(DB_NAME)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
async def trips(db: AsyncDatabase[Document], clock: StepClock) -> TripRepository:
    repository = TripRepository(db, clock=clock, history_limit=3)
    await repository.ensure_indexes()
    return repository


@pytest.fixture
def users(db: AsyncDatabase[Document], clock: StepClock) -> UserRepository:
    return UserRepository(db, clock=clock)


async def test_ensure_indexes_is_idempotent(
    trips: TripRepository, db: AsyncDatabase[Document]
) -> None:
    await trips.ensure_indexes()
    indexes = {index["name"]: dict(index["key"]) async for index in await db.trips.list_indexes()}
    assert indexes == {
        "_id_": {"_id": 1},
        "origin_2dsphere": {"origin": "2dsphere"},
        "status_created": {"status": 1, "created_at": 1},
        "rider_id": {"rider_id": 1},
        "driver_id": {"driver_id": 1},
    }


async def test_create_stores_a_requested_trip_without_driver(
    trips: TripRepository, clock: StepClock
) -> None:
    created = await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)

    stored_at = clock.now.replace(microsecond=123_000)
    assert created == {
        "_id": "t1",
        "rider_id": "r1",
        "driver_id": None,
        "status": "requested",
        "origin": HERE,
        "destination": THERE,
        "history": [],
        "created_at": stored_at,
        "updated_at": stored_at,
    }
    assert await trips.get("t1") == created


async def test_get_of_an_unknown_trip_is_none(trips: TripRepository) -> None:
    assert await trips.get("nope") is None


async def test_a_replayed_create_returns_the_stored_trip(
    trips: TripRepository, clock: StepClock
) -> None:
    first = await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    clock.advance(5)

    again = await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)

    assert again == first


async def test_create_with_another_riders_trip_id_conflicts(trips: TripRepository) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)

    with pytest.raises(Conflict):
        await trips.create(trip_id="t1", rider_id="r2", origin=HERE, destination=THERE)
    stored = await trips.get("t1")
    assert stored is not None
    assert stored["rider_id"] == "r1"


@pytest.mark.parametrize(
    "origin",
    [
        {"type": "Point", "coordinates": [2.35]},
        {"type": "Point", "coordinates": [200.0, 48.0]},
        {"type": "Point", "coordinates": [2.35, math.nan]},
        {"type": "Point", "coordinates": ["2.35", 48.0]},
        {"type": "Polygon", "coordinates": [2.35, 48.0]},
        {"lat": 48.0, "lng": 2.35},
    ],
)
async def test_create_refuses_a_malformed_point(
    trips: TripRepository, origin: dict[str, Any]
) -> None:
    with pytest.raises(ValidationFailed, match="origin"):
        await trips.create(trip_id="t1", rider_id="r1", origin=origin, destination=THERE)
    assert await trips.get("t1") is None


async def test_apply_move_sets_status_driver_and_history(
    trips: TripRepository, clock: StepClock
) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    clock.advance(60)

    moved = await trips.apply_move(
        "t1", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1",
        by="d1",
    )  # fmt: skip

    moved_at = (clock.now).replace(microsecond=123_000)
    assert moved is not None
    assert (moved["status"], moved["driver_id"], moved["updated_at"]) == (
        "accepted",
        "d1",
        moved_at,
    )
    assert moved["history"] == [
        {"event_id": "e1", "from": "requested", "to": "accepted", "at": moved_at, "by": "d1"}
    ]
    assert await trips.get("t1") == moved


async def test_apply_move_without_the_expected_status_is_refused(trips: TripRepository) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)

    refused = await trips.apply_move(
        "t1", from_status="accepted", to_status="arrived", assign_driver=None, event_id="e1"
    )

    assert refused is None
    stored = await trips.get("t1")
    assert stored is not None
    assert (stored["status"], stored["history"]) == ("requested", [])


async def test_apply_move_of_an_unknown_trip_is_none(trips: TripRepository) -> None:
    moved = await trips.apply_move(
        "nope", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1"
    )
    assert moved is None


async def test_concurrent_accepts_have_exactly_one_winner(trips: TripRepository) -> None:
    for n in range(5):
        trip_id = f"t{n}"
        await trips.create(trip_id=trip_id, rider_id="r1", origin=HERE, destination=THERE)
        results = await asyncio.gather(
            *(
                trips.apply_move(
                    trip_id,
                    from_status="requested",
                    to_status="accepted",
                    assign_driver=driver,
                    event_id=f"accept-{trip_id}-{driver}",
                )
                for driver in ("d1", "d2", "d3")
            )
        )

        winners = [result for result in results if result is not None]
        assert len(winners) == 1
        stored = await trips.get(trip_id)
        assert stored is not None
        assert stored["driver_id"] == winners[0]["driver_id"]
        assert len(stored["history"]) == 1


async def test_assigning_a_driver_needs_a_free_seat(trips: TripRepository) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    await trips.apply_move(
        "t1", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1"
    )

    taken = await trips.apply_move(
        "t1", from_status="accepted", to_status="arrived", assign_driver="d2", event_id="e2"
    )

    assert taken is None
    stored = await trips.get("t1")
    assert stored is not None
    assert (stored["status"], stored["driver_id"]) == ("accepted", "d1")


async def test_a_replayed_event_returns_the_trip_untouched(
    trips: TripRepository, clock: StepClock
) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    accept = {"from_status": "requested", "to_status": "accepted", "assign_driver": "d1"}
    first = await trips.apply_move("t1", event_id="e1", **accept)
    clock.advance(30)

    replayed = await trips.apply_move("t1", event_id="e1", **accept)

    assert replayed == first
    assert replayed is not None
    assert len(replayed["history"]) == 1


async def test_a_replayed_event_after_later_moves_does_not_apply_again(
    trips: TripRepository,
) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    await trips.apply_move(
        "t1", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1"
    )
    arrived = await trips.apply_move(
        "t1", from_status="accepted", to_status="arrived", assign_driver=None, event_id="e2"
    )

    replayed = await trips.apply_move(
        "t1", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1"
    )

    assert replayed == arrived
    assert replayed is not None
    assert replayed["status"] == "arrived"


async def test_the_same_event_id_cannot_move_the_trip_twice(trips: TripRepository) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    await trips.apply_move(
        "t1", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1"
    )

    reused = await trips.apply_move(
        "t1", from_status="accepted", to_status="arrived", assign_driver=None, event_id="e1"
    )

    assert reused is not None
    assert reused["status"] == "accepted"


async def test_history_keeps_only_the_latest_moves(trips: TripRepository) -> None:
    await trips.create(trip_id="t1", rider_id="r1", origin=HERE, destination=THERE)
    statuses = ["requested", "accepted", "arrived", "in_progress", "completed"]
    for n, (before, after) in enumerate(itertools.pairwise(statuses)):
        await trips.apply_move(
            "t1", from_status=before, to_status=after, assign_driver=None, event_id=f"e{n}"
        )

    stored = await trips.get("t1")

    assert stored is not None
    assert [entry["event_id"] for entry in stored["history"]] == ["e1", "e2", "e3"]
    assert stored["status"] == "completed"


# Distances in metres from CENTRE: twenty open trips inside 2 km (three tied at 700 m, with ids
# out of insertion order), open ones beyond it, and trips inside it that are no longer open.
OPEN_INSIDE = [(f"in-{n:02d}", 100.0 * n, 37.0 * n) for n in range(1, 18)] + [
    ("tie-c", 700.0, 10.0),
    ("tie-a", 700.0, 10.0),
    ("tie-b", 700.0, 10.0),
]
OPEN_OUTSIDE = [(f"out-{n}", 2000.0 + 150.0 * n, 80.0 * n) for n in range(1, 6)]
TAKEN_INSIDE = [(f"taken-{n}", 50.0 + 300.0 * n, 123.0 * n) for n in range(5)]
RADIUS_KM = 1.95


async def seed(trips: TripRepository) -> list[str]:
    """Insert the search fixtures; return the ids search_open must find, in order."""
    for trip_id, distance, bearing in OPEN_INSIDE + OPEN_OUTSIDE + TAKEN_INSIDE:
        origin = at_distance(distance, bearing)
        await trips.create(trip_id=trip_id, rider_id="r1", origin=origin, destination=THERE)
    for trip_id, _, _ in TAKEN_INSIDE:
        await trips.apply_move(
            trip_id, from_status="requested", to_status="accepted", assign_driver="d1",
            event_id=f"accept-{trip_id}",
        )  # fmt: skip
    return [trip_id for trip_id, _, _ in sorted(OPEN_INSIDE, key=lambda t: (t[1], t[0]))]


async def search_all(trips: TripRepository, page_size: int) -> list[list[Document]]:
    pages: list[list[Document]] = []
    cursor: str | None = None
    while True:
        page, cursor = await trips.search_open(
            lat=CENTRE[0], lng=CENTRE[1], radius_km=RADIUS_KM, limit=page_size, cursor=cursor
        )
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) <= len(OPEN_INSIDE), "the cursor never ended"


async def test_search_finds_open_trips_in_the_radius_nearest_first(trips: TripRepository) -> None:
    expected = await seed(trips)

    found, cursor = await trips.search_open(
        lat=CENTRE[0], lng=CENTRE[1], radius_km=RADIUS_KM, limit=100, cursor=None
    )

    assert cursor is None
    assert [trip["_id"] for trip in found] == expected
    assert {trip["status"] for trip in found} == {"requested"}
    seeded = {trip_id: distance for trip_id, distance, _ in OPEN_INSIDE}
    for trip in found:
        assert trip["distance_m"] == pytest.approx(seeded[trip["_id"]], abs=0.5)


async def test_pages_concatenate_to_the_full_ordered_list(trips: TripRepository) -> None:
    expected = await seed(trips)

    for page_size in range(1, len(expected) + 2):
        pages = await search_all(trips, page_size)

        assert [trip["_id"] for page in pages for trip in page] == expected, page_size
        assert all(len(page) == page_size for page in pages[:-1])
        assert 1 <= len(pages[-1]) <= page_size


async def test_pages_of_seven(trips: TripRepository) -> None:
    expected = await seed(trips)

    pages = await search_all(trips, 7)

    assert [len(page) for page in pages] == [7, 7, 6]
    assert [trip["_id"] for page in pages for trip in page] == expected


async def test_trips_that_did_not_move_are_neither_repeated_nor_skipped(
    trips: TripRepository,
) -> None:
    expected = await seed(trips)
    first, cursor = await trips.search_open(
        lat=CENTRE[0], lng=CENTRE[1], radius_km=RADIUS_KM, limit=7, cursor=None
    )
    # Between pages a trip already seen is taken and a new one appears nearer than the cursor.
    await trips.apply_move(
        first[0]["_id"], from_status="requested", to_status="accepted", assign_driver="d9",
        event_id="late-accept",
    )  # fmt: skip
    await trips.create(
        trip_id="late", rider_id="r2", origin=at_distance(150.0, 5.0), destination=THERE
    )

    rest, _ = await trips.search_open(
        lat=CENTRE[0], lng=CENTRE[1], radius_km=RADIUS_KM, limit=100, cursor=cursor
    )

    assert [trip["_id"] for trip in first + rest] == expected


async def test_an_empty_area_has_no_results_and_no_cursor(trips: TripRepository) -> None:
    await seed(trips)

    found, cursor = await trips.search_open(
        lat=-33.86, lng=151.2, radius_km=5, limit=7, cursor=None
    )

    assert (found, cursor) == ([], None)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"d": -1, "id": "a"}').decode(),
        base64.urlsafe_b64encode(b'{"d": "1", "id": "a"}').decode(),
        base64.urlsafe_b64encode(b'{"d": true, "id": "a"}').decode(),
        base64.urlsafe_b64encode(b'{"d": NaN, "id": "a"}').decode(),
        base64.urlsafe_b64encode(b'{"d": 1, "id": 7}').decode(),
        base64.urlsafe_b64encode(b'{"d": 1, "id": "a", "x": 0}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "é",
        "A" * 5000,
    ],
)
async def test_a_malformed_cursor_is_a_validation_error(trips: TripRepository, cursor: str) -> None:
    with pytest.raises(ValidationFailed, match="cursor"):
        await trips.search_open(lat=CENTRE[0], lng=CENTRE[1], radius_km=1, limit=7, cursor=cursor)


@pytest.mark.parametrize(
    ("lat", "lng", "radius_km", "limit"),
    [(91.0, 0.0, 1.0, 7), (0.0, -181.0, 1.0, 7), (0.0, 0.0, 0.0, 7), (0.0, 0.0, math.inf, 7),
     (0.0, 0.0, 1.0, 0), (math.nan, 0.0, 1.0, 7)],
)  # fmt: skip
async def test_search_refuses_arguments_out_of_range(
    trips: TripRepository, lat: float, lng: float, radius_km: float, limit: int
) -> None:
    with pytest.raises(ValidationFailed):
        await trips.search_open(lat=lat, lng=lng, radius_km=radius_km, limit=limit, cursor=None)


@given(
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.text(max_size=64),
)
def test_a_cursor_round_trips(distance: float, trip_id: str) -> None:
    cursor = encode_cursor(distance, trip_id)

    assert decode_cursor(cursor) == (distance, trip_id)
    assert cursor.isascii()
    assert "=" not in cursor


@given(st.text(max_size=200))
def test_any_text_decodes_or_is_a_validation_error(cursor: str) -> None:
    try:
        distance, trip_id = decode_cursor(cursor)
    except ValidationFailed:
        return
    assert math.isfinite(distance)
    assert distance >= 0
    assert isinstance(trip_id, str)


async def test_update_profile_creates_then_updates(users: UserRepository, clock: StepClock) -> None:
    created_at = clock.now.replace(microsecond=123_000)
    created = await users.update_profile("u1", role="rider", changes={"name": "Ada"})
    clock.advance(10)
    updated = await users.update_profile("u1", role="driver", changes={"phone": "+33 1 23"})

    assert created == {
        "_id": "u1",
        "name": "Ada",
        "role": "rider",
        "created_at": created_at,
        "updated_at": created_at,
    }
    assert updated == {
        "_id": "u1",
        "name": "Ada",
        "phone": "+33 1 23",
        "role": "rider",
        "created_at": created_at,
        "updated_at": created_at + timedelta(seconds=10),
    }
    assert await users.get("u1") == updated
    assert await users.get("u1", stale_ok=True) == updated


async def test_get_of_an_unknown_user_is_none(users: UserRepository) -> None:
    assert await users.get("nobody") is None


async def test_concurrent_first_updates_make_one_profile(users: UserRepository) -> None:
    results = await asyncio.gather(
        *(users.update_profile("u1", role="rider", changes={f"f{n}": n}) for n in range(5))
    )

    stored = await users.get("u1")
    assert stored is not None
    assert {key: stored[key] for key in ("f0", "f1", "f2", "f3", "f4")} == {
        f"f{n}": n for n in range(5)
    }
    assert len({result["created_at"] for result in results}) == 1


@pytest.mark.parametrize("field", ["_id", "role", "created_at", "updated_at", "$set", "a.b", ""])
async def test_reserved_or_nested_profile_fields_are_refused(
    users: UserRepository, field: str
) -> None:
    with pytest.raises(ValidationFailed):
        await users.update_profile("u1", role="rider", changes={field: "x"})
    assert await users.get("u1") is None


CALLS: dict[str, Callable[[TripRepository, UserRepository], Awaitable[object]]] = {
    "ensure_indexes": lambda trips, users: trips.ensure_indexes(),
    "create": lambda trips, users: trips.create(
        trip_id="t1", rider_id="r1", origin=HERE, destination=THERE
    ),
    "get": lambda trips, users: trips.get("t1"),
    "apply_move": lambda trips, users: trips.apply_move(
        "t1", from_status="requested", to_status="accepted", assign_driver="d1", event_id="e1"
    ),
    "search_open": lambda trips, users: trips.search_open(
        lat=CENTRE[0], lng=CENTRE[1], radius_km=1, limit=7, cursor=None
    ),
    "get_user": lambda trips, users: users.get("u1"),
    "get_user_stale": lambda trips, users: users.get("u1", stale_ok=True),
    "update_profile": lambda trips, users: users.update_profile(
        "u1", role="rider", changes={"name": "Ada"}
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_an_unreachable_database_is_dependency_unavailable(
    settings_for: Callable[..., Any], call: str
) -> None:
    settings: CoreSettings = settings_for(
        CoreSettings,
        mongo_url=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        mongo_db=DB_NAME,
        mongo_server_selection_timeout_ms=200,
        mongo_query_timeout_ms=400,
    )
    async with open_mongo(settings) as client:
        db = database(client, settings)
        with pytest.raises(DependencyUnavailable) as caught:
            async with asyncio.timeout(scaled(10)):
                await CALLS[call](TripRepository(db), UserRepository(db))

    assert caught.value.dependency == "mongodb"
    assert caught.value.status == 503
    assert isinstance(caught.value.__cause__, PyMongoError)
