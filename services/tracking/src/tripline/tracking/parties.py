"""Who may watch a trip, and who drives it: its rider, its driver, and admins.

Core keeps each trip's parties in Redis (``tripline.common.channels.record_parties``); when the
record is missing or Redis fails, core's internal endpoint answers instead, asked with the
caller's own token so core applies its own visibility rule (through a guard: once core did not
answer, it is not asked again until its ``/health/live`` answers). Either answer is trusted for
``PARTIES_CACHE_S`` (2 s) to let callers in; a refusal is always checked afresh, so a driver
who has just accepted the trip is let in at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.auth import Identity, Role
from tripline.common.channels import read_parties
from tripline.common.errors import DependencyUnavailable, NotFound
from tripline.common.guard import DependencyGuard
from tripline.common.logs import get_logger

log = get_logger(__name__)

MAX_CACHED_TRIPS = 10_000


@dataclass(frozen=True)
class TripParties:
    rider_id: str
    driver_id: str | None
    status: str | None

    def may_watch(self, identity: Identity) -> bool:
        return (
            identity.role is Role.ADMIN
            or identity.user_id == self.rider_id
            or (self.driver_id is not None and identity.user_id == self.driver_id)
        )

    def is_driver(self, identity: Identity) -> bool:
        return self.driver_id is not None and identity.user_id == self.driver_id


class Parties:
    def __init__(
        self,
        redis: Redis,
        *,
        core_url: str,
        http: httpx.AsyncClient,
        guard: DependencyGuard,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._core_url = core_url.rstrip("/")
        self._http = http
        self._guard = guard
        self._cache_s = cache_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TripParties]] = OrderedDict()

    async def require(self, identity: Identity, token: str, trip_id: str) -> TripParties:
        """The trip's parties when ``identity`` may watch it; raises :class:`NotFound` otherwise
        (an outsider learns nothing) and :class:`DependencyUnavailable` when neither Redis nor
        core can tell."""
        parties = await self._lookup(trip_id, token, cached_ok=True)
        if parties is None or not parties.may_watch(identity):
            # A refusal is never taken from the cache: the caller may be the driver who has
            # just accepted the trip.
            parties = await self._lookup(trip_id, token, cached_ok=False)
        if parties is None or not parties.may_watch(identity):
            raise NotFound(f"no trip {trip_id}")
        return parties

    async def _lookup(self, trip_id: str, token: str, *, cached_ok: bool) -> TripParties | None:
        cached = self._cache.get(trip_id)
        if cached_ok and cached is not None and cached[0] > self._clock():
            return cached[1]
        parties = await self._from_redis(trip_id)
        if parties is None:
            parties = await self._from_core(trip_id, token)
        if parties is not None:
            self._cache[trip_id] = (self._clock() + self._cache_s, parties)
            self._cache.move_to_end(trip_id)
            while len(self._cache) > MAX_CACHED_TRIPS:
                self._cache.popitem(last=False)
        return parties

    async def _from_redis(self, trip_id: str) -> TripParties | None:
        try:
            recorded = await read_parties(self._redis, trip_id)
        except (RedisError, OSError) as exc:
            log.warning("trip parties not read from Redis", trip_id=trip_id, error=repr(exc))
            return None
        if recorded is None or recorded["rider_id"] is None:
            return None
        return TripParties(recorded["rider_id"], recorded["driver_id"], recorded["status"])

    async def _from_core(self, trip_id: str, token: str) -> TripParties | None:
        url = f"{self._core_url}/internal/trips/{trip_id}/parties"
        try:
            with self._guard.call():
                answer = await self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise DependencyUnavailable("core", "who may watch this trip is unknown") from exc
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise DependencyUnavailable("core", f"core answered {answer.status_code}")
        try:
            data = answer.json()
            return TripParties(str(data["rider_id"]), data.get("driver_id"), data.get("status"))
        except (ValueError, KeyError, TypeError) as exc:
            raise DependencyUnavailable("core", "core's answer was unreadable") from exc
