"""The latest known location of each trip, kept in Redis."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.channels import read_history
from tripline.common.errors import DependencyUnavailable, NotFound
from tripline.common.logs import get_logger

log = get_logger(__name__)

TRIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def latest_key(trip_id: str) -> str:
    return f"tracking:trip:{trip_id}:latest"


def driver_latest_key(driver_id: str) -> str:
    return f"tracking:driver:{driver_id}:latest"


def check_trip_id(trip_id: str) -> str:
    """Return ``trip_id``; raises :class:`NotFound` for ids no trip can have."""
    if not TRIP_ID.fullmatch(trip_id):
        raise NotFound("no trip has that id")
    return trip_id


class StoredLocation(BaseModel):
    """The shape a trip's latest location has in Redis."""

    model_config = ConfigDict(extra="ignore")

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    heading: float | None = None
    speed: float | None = None
    ts: float
    seq: int = Field(ge=0)


class LocationStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def history_after(self, trip_id: str, since: int) -> tuple[int, list[str]]:
        """The trip's current sequence number and its kept events numbered after ``since``.

        Raises :class:`DependencyUnavailable` when Redis does not answer.
        """
        try:
            return await read_history(self._redis, trip_id, since=since)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis") from exc

    async def latest(self, trip_id: str) -> dict[str, Any] | None:
        """The trip's latest location, or ``None`` when nothing is known.

        Raises :class:`DependencyUnavailable` when Redis does not answer.
        """
        try:
            raw = await self._redis.get(latest_key(trip_id))
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis") from exc
        if raw is None:
            return None
        try:
            location = StoredLocation.model_validate_json(raw)
        except ValidationError as exc:
            # Unreadable data is no location: clients get a 404, not a 500.
            log.warning("unreadable location in redis", trip_id=trip_id, error=str(exc))
            return None
        return location.model_dump()
