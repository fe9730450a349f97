"""What a request must pass at the edge before anything is proxied, in order of cost.

1. Shedding: an overloaded replica refuses low, then normal priority (503), never critical.
2. Authentication: the bearer token, verified once and then cached (401).
3. Authorisation: the route's roles (403).
4. Rate limit: the route's tier, per token subject (429).

A request whose token fails is counted against its client address on the standard tier, so a
client guessing tokens meets 429 soon instead of an endless stream of 401s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.types import Scope

from tripline.common.auth import Identity, TokenVerifier, bearer_token
from tripline.common.errors import Forbidden, Overloaded, RateLimited, Unauthorized
from tripline.common.ratelimit import Quota, Tier, limit_key, rate_limit_headers
from tripline.common.ratelimit_redis import RedisLimiter
from tripline.gateway.clientaddr import Network, client_address
from tripline.gateway.metrics import GatewayMetrics
from tripline.gateway.routetable import GatewayRoute
from tripline.gateway.shedding import LoadShedder, Priority


@dataclass(frozen=True)
class Admission:
    """An admitted request: who sent it and the rate-limit headers its answer must carry."""

    identity: Identity
    headers: Sequence[tuple[bytes, bytes]]


@dataclass
class EdgePolicy:
    verifier: TokenVerifier
    limiter: RedisLimiter
    quotas: Mapping[Tier, Quota]
    shedder: LoadShedder
    trusted_proxies: Sequence[Network]
    metrics: GatewayMetrics

    async def admit(self, scope: Scope, route: GatewayRoute) -> Admission:
        """Return the admission of the request in ``scope`` for ``route``.

        Raises :class:`Overloaded`, :class:`Unauthorized`, :class:`Forbidden` or
        :class:`RateLimited` (each with the headers its answer needs); the caller turns them
        into problem responses, or into a refused WebSocket handshake.
        """
        if not self.shedder.admit(route.priority):
            self.metrics.shed(route.priority)
            raise Overloaded(self.shedder.retry_after_s())
        self.metrics.admitted(route.priority)
        connection = HTTPConnection(scope)
        try:
            identity = await self.verifier.verify(bearer_token(connection))
        except Unauthorized:
            await self._count_failed_authentication(scope, connection)
            raise
        if identity.role not in route.roles:
            allowed = ", ".join(sorted(role.value for role in route.roles))
            raise Forbidden(f"{route.pattern} is for the role {allowed}")
        if route.tier is None:
            return Admission(identity, ())
        headers = await self._limit(route.tier, f"u:{identity.user_id}", route.priority)
        return Admission(identity, headers)

    async def _limit(
        self, tier: Tier, subject: str, priority: Priority
    ) -> Sequence[tuple[bytes, bytes]]:
        # Critical traffic is never refused because Redis is away: an SOS must get through.
        decision = await self.limiter.hit(
            limit_key(tier, subject),
            self.quotas[tier],
            fail_open=priority is Priority.CRITICAL,
        )
        self.metrics.decided(tier, decision)
        headers = rate_limit_headers(tier, decision)
        if not decision.allowed:
            raise RateLimited(
                f"the {tier.value} limit of {decision.limit} requests per "
                f"{decision.window_s} s is used up; retry in {decision.retry_after_s} s",
                headers=headers,
            )
        return headers

    async def _count_failed_authentication(self, scope: Scope, connection: HTTPConnection) -> None:
        client = scope.get("client")
        address = client_address(
            client[0] if client else None,
            connection.headers.getlist("x-forwarded-for"),
            self.trusted_proxies,
        )
        await self._limit(Tier.STANDARD, f"ip:{address}", Priority.NORMAL)
