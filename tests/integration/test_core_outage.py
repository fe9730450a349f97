"""Core while MongoDB is away: reads from the last known copy, writes queued and applied once.

Core runs on its own Redis and its own SecantusDB process, which the tests stop and start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.core.app import create_app
from tripline.core.pending_writes import REJECTED, STREAM
from tripline.core.settings import CoreSettings
from tripline.devstack.backends import mongo_spec
from tripline.devstack.harness import Server, scaled, scrape_metric, serve_app
from tripline.devstack.ports import free_port
from tripline.devstack.testing import auth, eventually, fresh

pytestmark = pytest.mark.integration

TRIP = {"origin": {"lat": 41.39, "lng": 2.17}, "destination": {"lat": 41.4, "lng": 2.18}}
CACHE_TTL_S = 0.3


@dataclass
class Outage:
    core: httpx.AsyncClient
    mongo: Server
    redis: Redis

    async def stop_mongo(self) -> None:
        await asyncio.to_thread(self.mongo.stop)
        # Past every cache's lifetime: what is read next must come from the database.
        await asyncio.sleep(CACHE_TTL_S * 2)

    async def start_mongo(self) -> None:
        await asyncio.to_thread(self.mongo.start)


@pytest.fixture
async def outage(
    fresh_redis: Server, settings_for: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[Outage]:
    port = free_port()
    mongo = Server(mongo_spec(port, tmp_path / "mongo"), tmp_path / "mongo.log", port)
    await asyncio.to_thread(mongo.start)
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    settings = settings_for(
        CoreSettings,
        instance_id=fresh("core"),
        redis_url=redis_url,
        mongo_url=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        mongo_db=fresh("outage"),
        mongo_server_selection_timeout_ms=500,
        mongo_query_timeout_ms=1000,
        profile_cache_ttl_s=CACHE_TTL_S,
        trip_cache_ttl_s=CACHE_TTL_S,
        search_cache_ttl_s=CACHE_TTL_S,
        local_cache_ttl_s=CACHE_TTL_S / 3,
        pending_writes_interval_s=0.2,
    )
    redis = Redis.from_url(redis_url)
    try:
        async with (
            serve_app(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=scaled(20)) as core,
        ):
            yield Outage(core, mongo, redis)
    finally:
        await redis.aclose()
        await asyncio.to_thread(mongo.stop)


async def move(
    core: httpx.AsyncClient, trip_id: str, status: str, user: str, role: Role, key: str = ""
) -> httpx.Response:
    headers = auth(user, role) | ({"Idempotency-Key": key} if key else {})
    return await core.post(f"/api/trips/{trip_id}/status", json={"status": status}, headers=headers)


async def test_reads_answer_from_the_last_known_copy_marked_stale(outage: Outage) -> None:
    core, rider = outage.core, fresh("rider")
    saved = await core.patch("/api/users/me", json={"name": "Ada"}, headers=auth(rider, Role.RIDER))
    assert saved.status_code == 200, saved.text
    created = await core.post("/api/trips", json=TRIP, headers=auth(rider, Role.RIDER))
    trip_id = created.json()["id"]
    fresh_read = await core.get(f"/api/trips/{trip_id}", headers=auth(rider, Role.RIDER))
    assert "tripline-stale" not in fresh_read.headers

    await outage.stop_mongo()
    profile = await core.get("/api/users/me", headers=auth(rider, Role.RIDER))
    trip = await core.get(f"/api/trips/{trip_id}", headers=auth(rider, Role.RIDER))
    for answer in (profile, trip):
        assert answer.status_code == 200, answer.text
        assert answer.headers["tripline-stale"] == "true"
        assert int(answer.headers["age"]) >= 0
    assert profile.json()["name"] == "Ada"
    assert trip.json()["status"] == "requested"
    # The stale copy is no way around who may see a trip.
    outsider = await core.get(f"/api/trips/{trip_id}", headers=auth(fresh("r"), Role.RIDER))
    assert outsider.status_code == 404
    never_read = await core.get(f"/api/users/{fresh('u')}", headers=auth(rider, Role.RIDER))
    assert never_read.status_code == 503
    assert never_read.headers["content-type"] == "application/problem+json"


async def test_writes_are_queued_while_mongodb_is_down_and_applied_once_in_order(
    outage: Outage,
) -> None:
    core, rider, driver, late_driver = outage.core, fresh("rider"), fresh("d"), fresh("d")
    created = await core.post("/api/trips", json=TRIP, headers=auth(rider, Role.RIDER))
    trip_id = created.json()["id"]
    await outage.stop_mongo()

    first = await core.patch("/api/users/me", json={"name": "B"}, headers=auth(rider, Role.RIDER))
    keyed = auth(rider, Role.RIDER) | {"Idempotency-Key": "name-c"}
    second = await core.patch("/api/users/me", json={"name": "C"}, headers=keyed)
    replayed = await core.patch("/api/users/me", json={"name": "C"}, headers=keyed)
    for answer in (first, second, replayed):
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "pending"
    assert replayed.json()["write_id"] == second.json()["write_id"]

    accept = await move(core, trip_id, "accepted", driver, Role.DRIVER, key="accept-1")
    arrive = await move(core, trip_id, "arrived", driver, Role.DRIVER)
    too_late = await move(core, trip_id, "accepted", late_driver, Role.DRIVER)
    assert [a.status_code for a in (accept, arrive, too_late)] == [202, 202, 202]
    outsider = await move(core, trip_id, "cancelled", fresh("rider"), Role.RIDER)
    unknown = await move(core, fresh("trip"), "cancelled", rider, Role.RIDER)
    assert (outsider.status_code, unknown.status_code) == (404, 404)
    assert await outage.redis.xlen(STREAM) == 5

    await outage.start_mongo()

    async def applied() -> dict[str, Any] | None:
        answer = await core.get(f"/api/trips/{trip_id}", headers=auth(rider, Role.RIDER))
        if answer.status_code != 200 or answer.json()["status"] != "arrived":
            return None
        trip: dict[str, Any] = answer.json()
        return trip

    trip = await eventually(applied, timeout_s=30)
    assert trip["driver_id"] == driver
    profile = await core.get("/api/users/me", headers=auth(rider, Role.RIDER))
    assert profile.json()["name"] == "C"
    assert "tripline-stale" not in profile.headers
    assert await outage.redis.xlen(STREAM) == 0
    assert [key async for key in outage.redis.scan_iter("core:writes:pending:*")] == []
    rejected = await outage.redis.xrange(REJECTED)
    assert [fields[b"record"] for _id, fields in rejected] == [f"trip:{trip_id}".encode()]

    # Replaying the queued accept now answers the trip as it is; nothing moves twice.
    again = await move(core, trip_id, "accepted", driver, Role.DRIVER, key="accept-1")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "arrived"


async def test_a_write_waits_behind_queued_writes_of_its_record_once_mongodb_is_back(
    outage: Outage,
) -> None:
    core, rider = outage.core, fresh("rider")
    await outage.stop_mongo()
    queued = await core.patch(
        "/api/users/me", json={"name": "old"}, headers=auth(rider, Role.RIDER)
    )
    assert queued.status_code == 202
    # The replay is paused (MongoDB down); the next write must not overtake the queued one.
    await outage.redis.set("core:writes:lease", "someone-else", px=int(scaled(3) * 1000))
    await outage.start_mongo()
    newer = await core.patch("/api/users/me", json={"name": "new"}, headers=auth(rider, Role.RIDER))
    assert newer.status_code == 202, newer.text

    async def settled() -> str | None:
        answer = await core.get("/api/users/me", headers=auth(rider, Role.RIDER))
        name = answer.json().get("name")
        return name if await outage.redis.xlen(STREAM) == 0 and name is not None else None

    assert await eventually(settled, timeout_s=30) == "new"


async def guard_state(core: httpx.AsyncClient, dependency: str) -> tuple[float, float]:
    """The guard's ``(open, refusals)`` as core's metrics show them."""
    opened = await scrape_metric(core, "tripline_dependency_guard_open", dependency=dependency)
    refused = await scrape_metric(
        core, "tripline_dependency_guard_refusals_total", dependency=dependency
    )
    assert opened is not None
    assert refused is not None
    return opened, refused


async def test_a_hung_mongodb_costs_its_timeout_once_then_every_call_is_answered_at_once(
    outage: Outage,
) -> None:
    """SIGSTOP keeps MongoDB's sockets open while it answers nothing: the costly failure."""
    core, rider, driver = outage.core, fresh("rider"), fresh("driver")
    as_rider = auth(rider, Role.RIDER)
    created = await core.post("/api/trips", json=TRIP, headers=as_rider)
    assert created.status_code == 201, created.text
    trip_id = created.json()["id"]
    sos = {"lat": 41.39, "lng": 2.17}
    assert await guard_state(core, "mongodb") == (0.0, 0.0)

    outage.mongo.pause()
    try:
        # The trip's parties come from Redis; the first SOS waits out MongoDB's timeout only
        # looking up the rider's emergency contact, and that timeout opens the guard.
        first = await core.post(f"/api/trips/{trip_id}/sos", json=sos, headers=as_rider)
        assert first.status_code == 202, first.text
        opened, refused_before = await guard_state(core, "mongodb")
        assert opened == 1.0
        answers = [
            *[
                await core.post(f"/api/trips/{trip_id}/sos", json=sos, headers=as_rider)
                for _ in range(5)
            ],
            await core.patch("/api/users/me", json={"name": "Ada"}, headers=as_rider),
            await move(core, trip_id, "accepted", driver, Role.DRIVER, key="accept-hung"),
            await core.post("/api/trips", json=TRIP, headers=as_rider),
        ]
        statuses = [answer.status_code for answer in answers]
        _, refused_after = await guard_state(core, "mongodb")
    finally:
        outage.mongo.resume()

    # Every SOS accepted and every write queued, none of them sent to the hung database: each
    # was refused by the guard at once.
    assert statuses == [202] * 8, [answer.text for answer in answers]
    assert answers[5].json()["status"] == "pending"
    queued_trip = answers[7].json()
    assert queued_trip["status"] == "pending"
    assert answers[7].headers["location"] == f"/api/trips/{queued_trip['id']}"
    assert refused_after - refused_before >= 5 + 3
    # Recovery needs no request: the guard's own probe closes it.
    assert await eventually(lambda: closed(core), timeout_s=30)

    async def applied() -> bool | None:
        profile = await core.get("/api/users/me", headers=as_rider)
        trip = await core.get(f"/api/trips/{trip_id}", headers=as_rider)
        stored = await core.get(f"/api/trips/{queued_trip['id']}", headers=as_rider)
        done = (
            await outage.redis.xlen(STREAM) == 0
            and profile.json().get("name") == "Ada"
            and trip.json().get("status") == "accepted"
            and stored.status_code == 200
            and "tripline-stale" not in stored.headers
        )
        return done or None

    assert await eventually(applied, timeout_s=30)


async def closed(core: httpx.AsyncClient) -> bool | None:
    return (await guard_state(core, "mongodb"))[0] == 0.0 or None
