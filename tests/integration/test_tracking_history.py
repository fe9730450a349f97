"""The history writer on real Redis and SecantusDB: a crash between storing a batch and
removing it from the buffer neither loses nor duplicates a point; with Redis away, intake keeps
the points in MongoDB directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from tripline.common.errors import DependencyUnavailable
from tripline.common.guard import DependencyGuard
from tripline.common.redis_client import create_redis
from tripline.common.settings import ServiceSettings
from tripline.devstack.harness import Backends, Server
from tripline.devstack.testing import fresh
from tripline.tracking.history import DirectHistory, HistoryWriter, history_document
from tripline.tracking.intake import POINTS_STREAM, LocationIntake
from tripline.tracking.points import Rules
from tripline.tracking.store import LocationStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(fresh_redis: Server) -> AsyncIterator[Redis]:
    client = Redis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0")
    yield client
    await client.aclose()


@pytest.fixture
async def collection(backends: Backends) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    yield client[fresh("history")]["location_history"]
    await client.close()


def entry(trip_id: str, n: int) -> dict[str, str]:
    return {
        "trip_id": trip_id,
        "driver_id": "d1",
        "lat": repr(52.5 + n / 1000),
        "lng": "13.4",
        "ts": repr(1_800_000_000.0 + n),
        "heading": "",
        "speed": "8.0",
        "flagged": "0",
    }


async def test_a_batch_stored_but_not_removed_is_not_stored_twice(
    redis: Redis, collection: Any
) -> None:
    trip_id = fresh("trip")
    for n in range(30):
        await redis.xadd(POINTS_STREAM, entry(trip_id, n))  # type: ignore[arg-type]
    # A writer that stored the first 20 points, then died before removing them from the stream.
    await collection.insert_many([history_document(entry(trip_id, n)) for n in range(20)])
    writer = HistoryWriter(redis, collection, owner="survivor", retention_days=90)
    assert await writer.flush() == 30
    assert await redis.xlen(POINTS_STREAM) == 0
    stored = await collection.find({"trip_id": trip_id}).sort("ts", 1).to_list()
    assert [doc["ts"] for doc in stored] == [1_800_000_000.0 + n for n in range(30)]


async def test_only_the_lease_holder_writes(redis: Redis, collection: Any) -> None:
    await redis.xadd(POINTS_STREAM, entry(fresh("trip"), 1))  # type: ignore[arg-type]
    holder = HistoryWriter(redis, collection, owner="a", retention_days=90)
    other = HistoryWriter(redis, collection, owner="b", retention_days=90)
    assert await holder.flush() == 1
    await redis.xadd(POINTS_STREAM, entry(fresh("trip"), 2))  # type: ignore[arg-type]
    assert await other.flush() == 0
    assert await redis.xlen(POINTS_STREAM) == 1
    assert await holder.flush() == 1


async def test_points_redis_does_not_take_are_kept_in_mongodb_and_the_batch_accepted(
    fresh_redis: Server, collection: Any
) -> None:
    guarded = create_redis(
        ServiceSettings(redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0", instance_id="t")
    )
    mongo_guard = DependencyGuard(
        "mongodb",
        probe=_never_needed,
        is_outage=lambda exc: isinstance(exc, DependencyUnavailable),
        refusal=lambda: DependencyUnavailable("mongodb"),
    )
    rules = Rules(max_future_s=5, max_age_s=600, max_speed_mps=70)
    intake = LocationIntake(
        guarded,
        LocationStore(guarded),
        rules=rules,
        location_ttl_s=300,
        fallback=DirectHistory(collection, mongo_guard).store,
    )
    trip_id, now = fresh("trip"), time.time()
    points = [
        {"lat": 52.52, "lng": 13.40, "ts": now},
        {"lat": 52.5201, "lng": 13.40, "ts": now + 1},
    ]
    try:
        await asyncio.to_thread(fresh_redis.stop)
        recorded = await intake.record(trip_id, "d1", points)
        # The app's retry of the same batch (its answer was lost) changes nothing.
        again = await intake.record(trip_id, "d1", points)
    finally:
        await guarded.aclose()
    assert (recorded.accepted, recorded.seqs, again.accepted) == (2, [], 2)
    stored = await collection.find({"trip_id": trip_id}).sort("ts", 1).to_list()
    assert [(doc["driver_id"], doc["ts"]) for doc in stored] == [("d1", now), ("d1", now + 1)]


async def _never_needed() -> None:
    raise AssertionError("MongoDB answered throughout: its guard never probes")
