"""Location intake: a driver's points become the trip's latest location, live events and
history, in one Redis script per batch.

For each accepted point, oldest first, the script appends it to the stream ``tracking:points``
(the history buffer, see :mod:`tripline.tracking.history`), numbers and publishes it as a
``location`` event (``tripline.common.channels``), and makes it the trip's and the driver's
latest location (kept ``LOCATION_TTL_S``) unless a newer point is already there. The stream
entry comes first: a point that was published is always in the history too.

A point whose time the trip already has (a batch sent again after a lost answer) is skipped, so
a replay changes nothing: the trip's recent point times are kept in a sorted set (the last
``SEEN_MAX``, for a day).

When Redis does not take a batch (down, hung, or refused at once by its guard), the accepted
points go straight to MongoDB's history through ``fallback`` and the batch is still accepted:
the driver's points are kept, though nobody watching sees them live (live is Redis) and the
jump check starts afresh. Only when MongoDB refuses them too is the batch refused, and the
driver's app sends it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.channels import (
    HISTORY_MAX,
    HISTORY_TTL_S,
    PUBLISH_FUNCTION,
    events_channel,
    history_key,
    sequence_key,
)
from tripline.common.errors import DependencyUnavailable
from tripline.tracking.points import Accepted, Point, Rules, screen
from tripline.tracking.store import LocationStore, driver_latest_key, latest_key

POINTS_STREAM = "tracking:points"
SEEN_MAX = 1000


def seen_key(trip_id: str) -> str:
    return f"tracking:trip:{trip_id}:seen"


# KEYS: sequence, history, trip latest, driver latest, points stream, seen point times.
# ARGV: channel, history max, history ttl, location ttl, then per point: ts, stream fields
# (JSON object), event body (JSON object without seq), latest body (JSON object without seq).
# Returns the number of each point, 0 for one already recorded.
_RECORD = (
    PUBLISH_FUNCTION
    + """
local function newer(key, ts)
  local current = redis.call('GET', key)
  return (not current) or tonumber(cjson.decode(current)['ts']) < ts
end
local function record(ts, fields_json, event, latest_body)
  local flat = {}
  for name, value in pairs(cjson.decode(fields_json)) do
    table.insert(flat, name)
    table.insert(flat, tostring(value))
  end
  redis.call('XADD', KEYS[5], '*', unpack(flat))
  local seq = publish_event(KEYS[1], KEYS[2], ARGV[1], event, ARGV[2], ARGV[3])
  local latest = '{"seq":' .. seq .. ',' .. string.sub(latest_body, 2)
  for _, key in ipairs({KEYS[3], KEYS[4]}) do
    if newer(key, ts) then
      redis.call('SET', key, latest, 'EX', ARGV[4])
    end
  end
  return seq
end
local seqs = {}
for i = 5, #ARGV, 4 do
  local ts = tonumber(ARGV[i])
  if redis.call('ZADD', KEYS[6], 'NX', ts, ARGV[i]) == 0 then
    table.insert(seqs, 0)
  else
    table.insert(seqs, record(ts, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]))
  end
end
redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -SEEN_MAX - 1)
redis.call('EXPIRE', KEYS[6], 86400)
return seqs
"""
).replace("SEEN_MAX", str(SEEN_MAX))


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Recorded:
    accepted: int
    rejected: list[dict[str, Any]]
    seqs: list[int]
    last: Point | None
    """The newest point now known (for the next batch's jump check)."""

    def body(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected}


def stream_fields(trip_id: str, driver_id: str, accepted: Accepted) -> dict[str, str]:
    """The history stream entry of an accepted point (what the history writer stores)."""
    point = accepted.point.model_dump()
    return {
        **{name: "" if value is None else repr(value) for name, value in point.items()},
        "trip_id": trip_id,
        "driver_id": driver_id,
        "flagged": "1" if accepted.flagged else "0",
    }


Fallback = Callable[[Sequence[Mapping[str, str]]], Awaitable[None]]


class LocationIntake:
    def __init__(
        self,
        redis: Redis,
        store: LocationStore,
        *,
        rules: Rules,
        location_ttl_s: int,
        fallback: Fallback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._fallback = fallback
        self._store = store
        self._rules = rules
        self._location_ttl_s = location_ttl_s
        self._clock = clock
        self._record = redis.register_script(_RECORD)

    async def record(
        self, trip_id: str, driver_id: str, raw_points: Sequence[Mapping[str, Any]]
    ) -> Recorded:
        """Screen the driver's points against the trip's latest location and record the
        accepted ones.

        Raises :class:`DependencyUnavailable` when neither Redis nor the fallback takes them
        (nothing is then recorded: the driver's app keeps the batch and sends it again).
        """
        try:
            latest = await self._store.latest(trip_id)
        except DependencyUnavailable:
            if self._fallback is None:
                raise
            latest = None
        previous = (
            Point.model_validate({k: latest[k] for k in ("lat", "lng", "ts")}) if latest else None
        )
        return await self.record_after(previous, trip_id, driver_id, raw_points)

    async def record_after(
        self,
        previous: Point | None,
        trip_id: str,
        driver_id: str,
        raw_points: Sequence[Mapping[str, Any]],
    ) -> Recorded:
        """:meth:`record`, with the jump check starting from ``previous`` (a socket remembers
        its driver's last point, sparing a Redis read per point)."""
        screened = screen(raw_points, now=self._clock(), previous=previous, rules=self._rules)
        if not screened.accepted:
            return Recorded(0, screened.rejected, [], previous)
        args: list[Any] = [
            events_channel(trip_id),
            HISTORY_MAX,
            HISTORY_TTL_S,
            self._location_ttl_s,
        ]
        for accepted in screened.accepted:
            args += self._point_args(trip_id, driver_id, accepted)
        keys = [
            sequence_key(trip_id),
            history_key(trip_id),
            latest_key(trip_id),
            driver_latest_key(driver_id),
            POINTS_STREAM,
            seen_key(trip_id),
        ]
        last = screened.accepted[-1].point
        try:
            seqs = await self._record(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            if self._fallback is None:
                raise DependencyUnavailable("redis", "locations cannot be recorded") from exc
            await self._fallback([stream_fields(trip_id, driver_id, a) for a in screened.accepted])
            return Recorded(len(screened.accepted), screened.rejected, [], last)
        numbers = [int(seq) for seq in seqs]
        return Recorded(len(screened.accepted), screened.rejected, [n for n in numbers if n], last)

    @staticmethod
    def _point_args(trip_id: str, driver_id: str, accepted: Accepted) -> list[Any]:
        point = accepted.point.model_dump()
        fields = stream_fields(trip_id, driver_id, accepted)
        event = {"type": "location", **point, "trip_id": trip_id}
        if accepted.flagged:
            event["flagged"] = True
        return [repr(accepted.point.ts), _json(fields), _json(event), _json(point)]
