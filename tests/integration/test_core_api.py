"""Core's users, trips and analytics on real Redis and SecantusDB, two core replicas."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.common.channels import events_channel, parties_key
from tripline.core.app import create_app
from tripline.core.settings import CoreSettings
from tripline.devstack.harness import Backends, Server, scaled, serve_app
from tripline.devstack.testing import auth, fresh

pytestmark = pytest.mark.integration

ORIGIN = {"lat": 52.5200, "lng": 13.4050}
DESTINATION = {"lat": 52.5300, "lng": 13.4200}


@pytest.fixture
async def replicas(settings_for: Callable[..., Any]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two core replicas sharing one Redis and one database, as in production."""
    db = fresh("core")
    first = create_app(settings_for(CoreSettings, mongo_db=db, instance_id="core-a"))
    second = create_app(settings_for(CoreSettings, mongo_db=db, instance_id="core-b"))
    async with (
        serve_app(first) as url_a,
        serve_app(second) as url_b,
        httpx.AsyncClient(base_url=url_a, timeout=scaled(10)) as a,
        httpx.AsyncClient(base_url=url_b, timeout=scaled(10)) as b,
    ):
        yield [a, b]


@pytest.fixture
async def core(replicas: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    return replicas[0]


@pytest.fixture
async def redis(backends: Backends) -> AsyncIterator[Redis]:
    client = Redis.from_url(backends.urls.redis_url)
    yield client
    await client.aclose()


async def request_trip(core: httpx.AsyncClient, rider: str, **extra: Any) -> dict[str, Any]:
    answer = await core.post(
        "/api/trips",
        json={"origin": ORIGIN, "destination": DESTINATION},
        headers=auth(rider, Role.RIDER) | extra,
    )
    assert answer.status_code == 201, answer.text
    trip: dict[str, Any] = answer.json()
    return trip


async def move(
    core: httpx.AsyncClient, trip_id: str, status: str, user: str, role: Role
) -> httpx.Response:
    return await core.post(
        f"/api/trips/{trip_id}/status", json={"status": status}, headers=auth(user, role)
    )


def problem_type(answer: httpx.Response) -> str:
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    slug: str = answer.json()["type"].rsplit("/", 1)[-1]
    return slug


async def test_a_requested_trip_is_visible_to_its_parties_only(core: httpx.AsyncClient) -> None:
    rider = fresh("rider")
    trip = await request_trip(core, rider)
    assert trip["status"] == "requested"
    assert trip["rider_id"] == rider
    assert trip["driver_id"] is None
    assert trip["origin"] == ORIGIN

    mine = await core.get(f"/api/trips/{trip['id']}", headers=auth(rider, Role.RIDER))
    theirs = await core.get(f"/api/trips/{trip['id']}", headers=auth(fresh("r"), Role.RIDER))
    admin = await core.get(f"/api/trips/{trip['id']}", headers=auth("ops", Role.ADMIN))
    assert mine.json() == trip
    assert theirs.status_code == 404
    assert problem_type(theirs) == "not-found"
    assert admin.status_code == 200


async def test_a_replayed_request_creates_one_trip(core: httpx.AsyncClient) -> None:
    rider = fresh("rider")
    first = await request_trip(core, rider, **{"Idempotency-Key": "k-1"})
    again = await request_trip(core, rider, **{"Idempotency-Key": "k-1"})
    other = await request_trip(core, rider, **{"Idempotency-Key": "k-2"})
    assert first["id"] == again["id"]
    assert other["id"] != first["id"]


async def test_a_trip_from_request_to_completion(core: httpx.AsyncClient, redis: Redis) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip = await request_trip(core, rider)
    trip_id = trip["id"]
    pubsub = redis.pubsub()
    await pubsub.subscribe(events_channel(trip_id))
    try:
        accepted = await move(core, trip_id, "accepted", driver, Role.DRIVER)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["driver_id"] == driver
        for status in ("arrived", "in_progress", "completed"):
            answer = await move(core, trip_id, status, driver, Role.DRIVER)
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == status
        seen = await statuses_published(pubsub, 4)
    finally:
        await pubsub.aclose()
    assert [event["status"] for event in seen] == [
        "accepted",
        "arrived",
        "in_progress",
        "completed",
    ]
    sequence = [event["seq"] for event in seen]
    assert sequence == sorted(sequence)
    assert len(set(sequence)) == 4
    recorded = await redis.hgetall(parties_key(trip_id))
    assert recorded[b"driver_id"] == driver.encode()
    assert recorded[b"status"] == b"completed"
    finished = await core.get(f"/api/trips/{trip_id}", headers=auth(driver, Role.DRIVER))
    assert finished.json()["status"] == "completed"


async def statuses_published(pubsub: Any, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + scaled(5)
    while len(events) < count and asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            events.append(json.loads(message["data"]))
    return events


async def test_who_may_move_a_trip(core: httpx.AsyncClient) -> None:
    rider, driver, other_driver = fresh("rider"), fresh("driver"), fresh("driver")
    trip_id = (await request_trip(core, rider))["id"]

    assert (await move(core, trip_id, "accepted", rider, Role.RIDER)).status_code == 403
    assert (await move(core, trip_id, "accepted", fresh("r"), Role.RIDER)).status_code == 404
    # Not yet its driver: for this trip, an outsider.
    assert (await move(core, trip_id, "arrived", driver, Role.DRIVER)).status_code == 404
    assert (await move(core, trip_id, "accepted", driver, Role.DRIVER)).status_code == 200
    assert (await move(core, trip_id, "in_progress", driver, Role.DRIVER)).status_code == 409
    second = await move(core, trip_id, "accepted", other_driver, Role.DRIVER)
    assert second.status_code == 409
    assert problem_type(second) == "conflict"
    assert (await move(core, trip_id, "arrived", other_driver, Role.DRIVER)).status_code == 404
    assert (await move(core, trip_id, "arrived", rider, Role.RIDER)).status_code == 403
    cancelled = await move(core, trip_id, "cancelled", rider, Role.RIDER)
    assert cancelled.status_code == 200
    assert (await move(core, trip_id, "requested", rider, Role.RIDER)).status_code == 409


async def test_two_drivers_accepting_at_once_get_one_trip(core: httpx.AsyncClient) -> None:
    trip_id = (await request_trip(core, fresh("rider")))["id"]
    drivers = [fresh("driver") for _ in range(5)]
    answers = await asyncio.gather(
        *(move(core, trip_id, "accepted", driver, Role.DRIVER) for driver in drivers)
    )
    winners = [answer for answer in answers if answer.status_code == 200]
    assert len(winners) == 1
    assert sorted(answer.status_code for answer in answers) == [200, 409, 409, 409, 409]


async def test_search_finds_open_trips_nearby(core: httpx.AsyncClient) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    here = {"lat": -33.8688 + uuid.uuid4().int % 1000 / 1e5, "lng": 151.2093}
    near = await core.post(
        "/api/trips",
        json={"origin": here, "destination": DESTINATION},
        headers=auth(rider, Role.RIDER),
    )
    far_point = {"lat": here["lat"] + 1.0, "lng": here["lng"]}
    far = await core.post(
        "/api/trips",
        json={"origin": far_point, "destination": DESTINATION},
        headers=auth(rider, Role.RIDER),
    )
    answer = await core.get(
        "/api/trips/search",
        params={"lat": here["lat"], "lng": here["lng"], "radius_km": 5},
        headers=auth(driver, Role.DRIVER),
    )
    assert answer.status_code == 200, answer.text
    found = {item["id"] for item in answer.json()["items"]}
    assert near.json()["id"] in found
    assert far.json()["id"] not in found


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"origin": {"lat": 91, "lng": 0}, "destination": DESTINATION}, "origin.lat"),
        ({"origin": ORIGIN}, "destination"),
        ({"origin": ORIGIN, "destination": DESTINATION, "fare": 9}, "fare"),
    ],
)
async def test_an_invalid_trip_request_names_the_field(
    core: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    answer = await core.post("/api/trips", json=body, headers=auth(fresh("r"), Role.RIDER))
    assert answer.status_code == 422
    assert field in {error["loc"] for error in answer.json()["errors"]}


async def test_a_profile_update_reaches_every_replica(replicas: list[httpx.AsyncClient]) -> None:
    a, b = replicas
    user = fresh("rider")
    headers = auth(user, Role.RIDER)
    before = await b.get("/api/users/me", headers=headers)
    assert before.json()["name"] is None
    updated = await a.patch("/api/users/me", json={"name": "Ada"}, headers=headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Ada"
    deadline = asyncio.get_running_loop().time() + scaled(5)
    while (await b.get("/api/users/me", headers=headers)).json()["name"] != "Ada":
        assert asyncio.get_running_loop().time() < deadline, "replica b kept the old profile"
        await asyncio.sleep(0.05)


async def test_other_people_see_only_the_public_part_of_a_profile(
    core: httpx.AsyncClient,
) -> None:
    user = fresh("driver")
    await core.patch(
        "/api/users/me",
        json={"name": "Bo", "phone": "+4915112345678"},
        headers=auth(user, Role.DRIVER),
    )
    seen = await core.get(f"/api/users/{user}", headers=auth(fresh("r"), Role.RIDER))
    assert seen.json() == {"id": user, "role": "driver", "name": "Bo"}
    missing = await core.get(f"/api/users/{fresh('nobody')}", headers=auth("x", Role.RIDER))
    assert missing.status_code == 404


async def test_the_parties_endpoint_answers_parties_only(core: httpx.AsyncClient) -> None:
    rider = fresh("rider")
    trip_id = (await request_trip(core, rider))["id"]
    mine = await core.get(f"/internal/trips/{trip_id}/parties", headers=auth(rider, Role.RIDER))
    assert mine.json() == {
        "trip_id": trip_id,
        "rider_id": rider,
        "driver_id": None,
        "status": "requested",
    }
    outsider = await core.get(
        f"/internal/trips/{trip_id}/parties", headers=auth(fresh("r"), Role.RIDER)
    )
    assert outsider.status_code == 404


async def test_analytics_batches_are_accepted(core: httpx.AsyncClient, redis: Redis) -> None:
    before = await redis.xlen("analytics:events")
    events = [{"name": "app.opened", "ts": 1795000000.5, "properties": {"screen": "home"}}] * 3
    answer = await core.post(
        "/api/analytics/events", json={"events": events}, headers=auth(fresh("r"), Role.RIDER)
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 3}
    assert await redis.xlen("analytics:events") == before + 3


async def test_requests_without_a_token_are_unauthorized(core: httpx.AsyncClient) -> None:
    answer = await core.get("/api/users/me")
    assert answer.status_code == 401
    assert problem_type(answer) == "unauthorized"


async def test_a_replayed_status_change_is_applied_once(core: httpx.AsyncClient) -> None:
    trip_id = (await request_trip(core, fresh("rider")))["id"]
    driver = fresh("driver")
    headers = auth(driver, Role.DRIVER) | {"Idempotency-Key": "accept-1"}
    first = await core.post(
        f"/api/trips/{trip_id}/status", json={"status": "accepted"}, headers=headers
    )
    again = await core.post(
        f"/api/trips/{trip_id}/status", json={"status": "accepted"}, headers=headers
    )
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()


async def test_reads_fall_back_to_the_database_while_redis_is_away(
    settings_for: Callable[..., Any], fresh_redis: Server
) -> None:
    settings = settings_for(
        CoreSettings,
        mongo_db=fresh("core"),
        redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0",
        redis_socket_timeout_s=0.5,
    )
    rider = fresh("rider")
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(15)) as core,
    ):
        trip = await request_trip(core, rider)
        fresh_redis.stop()
        try:
            seen = await core.get(f"/api/trips/{trip['id']}", headers=auth(rider, Role.RIDER))
            me = await core.get("/api/users/me", headers=auth(rider, Role.RIDER))
        finally:
            fresh_redis.start()
    assert seen.status_code == 200, seen.text
    assert seen.json()["id"] == trip["id"]
    assert me.status_code == 200
