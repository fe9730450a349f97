"""Where a trip's live events meet: the Redis names core and tracking agree on.

Every event on a trip (a location from tracking, a status change or an SOS from core) takes the
next number of the trip's sequence and is published on the trip's channel, so a subscriber on
any tracking replica sees one ordered stream. The parties record lets tracking check who may
watch a trip without reading core's collections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

# Long enough for any trip to end; refreshed on every change of its parties.
PARTIES_TTL_S = 7 * 24 * 3600


def events_channel(trip_id: str) -> str:
    return f"trip:{trip_id}:events"


def sequence_key(trip_id: str) -> str:
    return f"trip:{trip_id}:seq"


def parties_key(trip_id: str) -> str:
    return f"trip:{trip_id}:parties"


async def publish_event(redis: Redis, trip_id: str, event: Mapping[str, Any]) -> int:
    """Number ``event`` with the trip's next sequence and publish it; returns that number.

    Raises what the client raises (``RedisError``, ``OSError``): the caller decides whether a
    lost live event matters (a status change is also in the database; an SOS is queued).
    """
    seq = int(await redis.incr(sequence_key(trip_id)))
    payload = json.dumps({**event, "trip_id": trip_id, "seq": seq}, separators=(",", ":"))
    await redis.publish(events_channel(trip_id), payload)
    return seq


async def record_parties(
    redis: Redis, trip_id: str, *, rider_id: str, driver_id: str | None, status: str
) -> None:
    """Keep the trip's rider, driver and status where tracking can read them."""
    key = parties_key(trip_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            key, mapping={"rider_id": rider_id, "driver_id": driver_id or "", "status": status}
        )
        pipe.expire(key, PARTIES_TTL_S)
        await pipe.execute()


async def read_parties(redis: Redis, trip_id: str) -> dict[str, str | None] | None:
    """The trip's parties and status, or None when core has not recorded the trip."""
    raw = await redis.hgetall(parties_key(trip_id))
    if not raw:
        return None
    fields = {_text(name): _text(value) for name, value in raw.items()}
    return {
        "rider_id": fields.get("rider_id") or None,
        "driver_id": fields.get("driver_id") or None,
        "status": fields.get("status") or None,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
