"""The latest known location of each trip, kept in Redis."""

from __future__ import annotations

import json
import re
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.errors import DependencyUnavailable, NotFound

TRIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def latest_key(trip_id: str) -> str:
    return f"tracking:trip:{trip_id}:latest"


def check_trip_id(trip_id: str) -> str:
    """Return ``trip_id``; raises :class:`NotFound` for ids no trip can have."""
    if not TRIP_ID.fullmatch(trip_id):
        raise NotFound("no trip has that id")
    return trip_id


class LocationStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def latest(self, trip_id: str) -> dict[str, Any] | None:
        """The trip's latest location, or ``None`` when nothing is known.

        Raises :class:`DependencyUnavailable` when Redis does not answer.
        """
        try:
            raw = await self._redis.get(latest_key(trip_id))
        except RedisError as exc:
            raise DependencyUnavailable("redis") from exc
        if raw is None:
            return None
        location: dict[str, Any] = json.loads(raw)
        return location
