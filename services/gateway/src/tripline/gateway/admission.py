"""What a request must pass at the edge before anything is proxied, in order of cost.

1. Shedding (503): by the gateway's own loop lag (``shedding``), by the route's upstream: its
   adaptive concurrency limit (``concurrency``) and its replicas' breakers (``upstreamload``).
   Low is refused first, then normal, never critical.
2. Authentication: the bearer token, verified once and then cached (401).
3. Authorisation: the route's roles (403).
4. Rate limit: the route's tier, per token subject (429).
5. At forwarding time, the request takes its place in flight at the upstream (:meth:`enter`),
   where the limit is checked once more: requests admitted together may have filled it since.

Shedding needs no token for most requests: one that its priority alone admits or refuses is
decided before the token is read. Only a ``NORMAL`` request that would be refused as
``BROWSING`` (by the loop or by the upstream's limit, not by open breakers) waits for its token
and its sender's trip state (``activetrips``): a party of an active trip passes as ``IN_TRIP``
where the thresholds allow. Its refusal, if it comes, then follows authentication.

A request whose token fails is counted against its client address on the standard tier, so a
client guessing tokens meets 429 soon instead of an endless stream of 401s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.types import Scope

from tripline.common.auth import Identity, TokenVerifier, bearer_token
from tripline.common.errors import (
    CircuitOpen,
    Forbidden,
    Overloaded,
    RateLimited,
    TriplineError,
    Unauthorized,
)
from tripline.common.ratelimit import Quota, Tier, limit_key, rate_limit_headers
from tripline.common.ratelimit_redis import RedisLimiter
from tripline.gateway.activetrips import ActiveTrips
from tripline.gateway.clientaddr import Network, client_address
from tripline.gateway.metrics import GatewayMetrics
from tripline.gateway.routetable import GatewayRoute
from tripline.gateway.routing import Upstream
from tripline.gateway.shedding import LoadShedder, Priority, Rank, rank_of
from tripline.gateway.upstreamload import Cause, Slot, UpstreamGuard


@dataclass(frozen=True)
class Admission:
    """An admitted request: who sent it, the rate-limit headers its answer must carry, and the
    rank it was admitted at (its priority refined by its sender's trip state, when that had to
    be looked up)."""

    identity: Identity
    headers: Sequence[tuple[bytes, bytes]]
    rank: Rank


@dataclass
class EdgePolicy:
    verifier: TokenVerifier
    limiter: RedisLimiter
    quotas: Mapping[Tier, Quota]
    shedder: LoadShedder
    trusted_proxies: Sequence[Network]
    metrics: GatewayMetrics
    upstreams: Mapping[Upstream, UpstreamGuard]
    trips: ActiveTrips

    async def admit(self, scope: Scope, route: GatewayRoute) -> Admission:
        """Return the admission of the request in ``scope`` for ``route``.

        Raises :class:`Overloaded` or :class:`CircuitOpen` (shed), :class:`Unauthorized`,
        :class:`Forbidden` or :class:`RateLimited` (each with the headers its answer needs);
        the caller turns them into problem responses, or into a refused WebSocket handshake.
        """
        rank = rank_of(route.priority)
        cause = self._refusal(route, rank)
        # Only browsing can be lifted by a trip; nothing passes breakers that are all open.
        contested = rank is Rank.BROWSING and cause in ("loop", "limit")
        if cause is not None and not contested:
            raise self._shed(route, rank, cause)
        connection = HTTPConnection(scope)
        try:
            identity = await self.verifier.verify(bearer_token(connection))
        except Unauthorized:
            await self._count_failed_authentication(scope, connection)
            raise
        if identity.role not in route.roles:
            allowed = ", ".join(sorted(role.value for role in route.roles))
            raise Forbidden(f"{route.pattern} is for the role {allowed}")
        if cause is not None:
            if await self.trips.is_active(identity.user_id):
                rank = Rank.IN_TRIP
                cause = self._refusal(route, rank)
            if cause is not None:
                raise self._shed(route, rank, cause)
        if route.websocket:
            # A socket holds no place in flight (it is not a request the limit can time):
            # admitted here. An HTTP request is, by enter().
            self.metrics.admitted(route.priority)
        if route.tier is None:
            return Admission(identity, (), rank)
        headers = await self._limit(route.tier, f"u:{identity.user_id}", route.priority)
        return Admission(identity, headers, rank)

    async def enter(self, route: GatewayRoute, admission: Admission) -> Slot:
        """Count an admitted request in flight at ``route``'s upstream, right before it is
        forwarded; the caller ends the :class:`Slot` when the forwarding ends.

        Raises :class:`Overloaded` or :class:`CircuitOpen` when the upstream refuses it now:
        :meth:`admit` only looked, and requests admitted meanwhile may have filled the limit.
        A request admitted as ``BROWSING`` that the limit now refuses is looked up as
        :meth:`admit` would have: a trip party passes as ``IN_TRIP`` where that fits.
        """
        guard, rank = self.upstreams[route.upstream], admission.rank
        entered = guard.enter(route.pattern, rank)
        contested = entered == "limit" and rank is Rank.BROWSING
        if contested and await self.trips.is_active(admission.identity.user_id):
            # No await between this look and the place it takes.
            rank = Rank.IN_TRIP
            entered = guard.enter(route.pattern, rank)
        if isinstance(entered, Slot):
            self.metrics.admitted(route.priority)
            return entered
        raise self._shed(route, rank, entered)

    def _refusal(self, route: GatewayRoute, rank: Rank) -> Cause | None:
        guard = self.upstreams[route.upstream]
        cause = guard.refusal(rank)
        if cause == "breaker":
            return cause
        # The priority's own question for every first look: its answer is the one the lag
        # controller has always given; only a request lifted to IN_TRIP asks by rank.
        admitted = (
            self.shedder.admit_rank(rank)
            if rank is Rank.IN_TRIP
            else self.shedder.admit(route.priority)
        )
        return cause if admitted else "loop"

    def _shed(self, route: GatewayRoute, rank: Rank, cause: Cause) -> TriplineError:
        self.metrics.shed(route.priority)
        self.metrics.shed_at(route.upstream.value, rank, cause)
        if cause == "breaker":
            guard = self.upstreams[route.upstream]
            return CircuitOpen(guard.name, guard.retry_after_s())
        return Overloaded(self.shedder.retry_after_s())

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
