"""What core's endpoints share for the life of the app: clients, repositories and caches."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from starlette.requests import Request

from tripline.common.auth import Identity, TokenVerifier, bearer_token
from tripline.common.cache import TwoLayerCache
from tripline.common.guard import DependencyGuard
from tripline.core.pending_writes import PendingWrites
from tripline.core.repository import TripRepository, UserRepository
from tripline.core.settings import CoreSettings
from tripline.core.stale import StaleCopies


@dataclass(frozen=True)
class Core:
    settings: CoreSettings
    verifier: TokenVerifier
    redis: Redis
    users: UserRepository
    trips: TripRepository
    profiles_cache: TwoLayerCache
    trips_cache: TwoLayerCache
    search_cache: TwoLayerCache
    stale: StaleCopies
    writes: PendingWrites
    mongo_guard: DependencyGuard | None = None

    async def identity(self, request: Request) -> Identity:
        """The caller, from its bearer token (core checks it again: it may be reached without
        the gateway inside the cluster). Raises :class:`Unauthorized`."""
        return await self.verifier.verify(bearer_token(request))


def core_of(request: Request) -> Core:
    core: Core = request.app.state.core
    return core
