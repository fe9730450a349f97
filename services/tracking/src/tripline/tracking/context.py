"""What tracking's endpoints share for the life of the app, and the socket edge policy."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Gauge
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from tripline.common.auth import Identity, TokenVerifier, bearer_token
from tripline.common.errors import RateLimited
from tripline.common.health import Health
from tripline.common.ratelimit import Quota, Tier, limit_key, rate_limit_headers
from tripline.common.ratelimit_redis import RedisLimiter
from tripline.tracking.hub import Hub
from tripline.tracking.intake import LocationIntake
from tripline.tracking.parties import Parties
from tripline.tracking.settings import TrackingSettings
from tripline.tracking.store import LocationStore


@dataclass(frozen=True)
class Tracking:
    settings: TrackingSettings
    redis: Redis
    verifier: TokenVerifier
    limiter: RedisLimiter
    parties: Parties
    hub: Hub
    store: LocationStore
    intake: LocationIntake
    health: Health
    open_sockets: Gauge

    async def identity(self, connection: HTTPConnection) -> tuple[Identity, str]:
        """The caller and its token. Raises :class:`Unauthorized`."""
        token = bearer_token(connection)
        return await self.verifier.verify(token), token

    async def admit_socket(self, identity: Identity) -> None:
        """Count an upgrade on the caller's critical-tier counters, the ones the gateway uses.

        Raises :class:`RateLimited`. Fails open while Redis is away: watching a live trip is
        critical, as at the gateway.
        """
        quota = Quota(self.settings.limit_critical_per_min)
        key = limit_key(Tier.CRITICAL, f"u:{identity.user_id}")
        decision = await self.limiter.hit(key, quota, fail_open=True)
        if not decision.allowed:
            raise RateLimited(
                f"too many connections; retry in {decision.retry_after_s} s",
                headers=rate_limit_headers(Tier.CRITICAL, decision),
            )


def tracking_of(connection: HTTPConnection) -> Tracking:
    tracking: Tracking = connection.app.state.tracking
    return tracking
