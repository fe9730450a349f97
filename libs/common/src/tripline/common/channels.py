"""Where a trip's live events meet: the Redis names core and tracking agree on.

Every event on a trip (a location from tracking, a status change or an SOS from core) takes the
next number of the trip's sequence, is kept in the trip's bounded history (a sorted set by
sequence number) and is published on the trip's channel, all in one script, so numbers and
publication order agree and a subscriber on any tracking replica sees one ordered stream; a
client that reconnects reads what it missed from the history. The parties record lets tracking
check who may watch a trip without reading core's collections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

# Long enough for any trip to end; refreshed on every change of its parties.
PARTIES_TTL_S = 7 * 24 * 3600
# A trip left open (an app that never completes it) stops counting as active after this.
ACTIVE_TRIP_TTL_S = 6 * 3600
ENDED_STATUSES = frozenset({"completed", "cancelled"})
# Events kept per trip for reconnecting clients: two minutes of one location a second, plus
# status and SOS events. Kept a day after the trip's last event; the sequence a week.
HISTORY_MAX = 120
HISTORY_TTL_S = 24 * 3600
SEQUENCE_TTL_S = 7 * 24 * 3600

# A Lua function other scripts include: number a JSON object ``body`` (at least one member),
# keep it in the history, publish it; returns the number. Keys are the caller's KEYS.
PUBLISH_FUNCTION = """
local function publish_event(seq_key, history_key, channel, body, history_max, history_ttl)
  local seq = redis.call('INCR', seq_key)
  redis.call('EXPIRE', seq_key, SEQUENCE_TTL)
  local event = '{"seq":' .. seq .. ',' .. string.sub(body, 2)
  redis.call('ZADD', history_key, seq, event)
  redis.call('ZREMRANGEBYRANK', history_key, 0, -tonumber(history_max) - 1)
  redis.call('EXPIRE', history_key, history_ttl)
  redis.call('PUBLISH', channel, event)
  return seq
end
""".replace("SEQUENCE_TTL", str(SEQUENCE_TTL_S))

# KEYS: sequence, history. ARGV: channel, body, history max, history ttl.
_PUBLISH = (
    PUBLISH_FUNCTION
    + """
return publish_event(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""
)


def events_channel(trip_id: str) -> str:
    return f"trip:{trip_id}:events"


def sequence_key(trip_id: str) -> str:
    return f"trip:{trip_id}:seq"


def parties_key(trip_id: str) -> str:
    return f"trip:{trip_id}:parties"


def active_trip_key(user_id: str) -> str:
    """Set while ``user_id`` is a party of a trip that has not ended; the gateway ranks such a
    user's requests above browsing at the same priority."""
    return f"active-trip:{user_id}"


def history_key(trip_id: str) -> str:
    return f"trip:{trip_id}:history"


def encode_event(trip_id: str, event: Mapping[str, Any]) -> str:
    """The event as published, before its number is put in front (by the script)."""
    return json.dumps({**event, "trip_id": trip_id}, separators=(",", ":"))


async def publish_event(redis: Redis, trip_id: str, event: Mapping[str, Any]) -> int:
    """Number ``event`` with the trip's next sequence and publish it; returns that number.

    Raises what the client raises (``RedisError``, ``OSError``): the caller decides whether a
    lost live event matters (a status change is also in the database; an SOS is queued).
    """
    script = redis.register_script(_PUBLISH)
    seq = await script(
        keys=[sequence_key(trip_id), history_key(trip_id)],
        args=[events_channel(trip_id), encode_event(trip_id, event), HISTORY_MAX, HISTORY_TTL_S],
    )
    return int(seq)


async def read_history(redis: Redis, trip_id: str, *, since: int) -> tuple[int, list[str]]:
    """The trip's current sequence number and the kept events numbered after ``since``, oldest
    first (JSON text, each with its ``seq``). Raises the Redis client's errors."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(sequence_key(trip_id))
        pipe.zrangebyscore(history_key(trip_id), f"({since}", "+inf")
        current, events = await pipe.execute()
    return int(current or 0), [_text(event) for event in events]


async def record_parties(
    redis: Redis, trip_id: str, *, rider_id: str, driver_id: str | None, status: str
) -> None:
    """Keep the trip's rider, driver and status where tracking can read them, and mark its
    parties as in an active trip (:func:`active_trip_key`) until it ends."""
    key = parties_key(trip_id)
    users = [user for user in (rider_id, driver_id) if user]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            key, mapping={"rider_id": rider_id, "driver_id": driver_id or "", "status": status}
        )
        pipe.expire(key, PARTIES_TTL_S)
        for user in users:
            if status in ENDED_STATUSES:
                pipe.delete(active_trip_key(user))
            else:
                pipe.set(active_trip_key(user), trip_id, ex=ACTIVE_TRIP_TTL_S)
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
