"""The edge gateway: admits requests by the route table and proxies them to the services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from tripline.common.app import service_app
from tripline.common.auth import TokenVerifier
from tripline.common.breaker import CircuitBreaker
from tripline.common.channels import active_trip_key
from tripline.common.errors import TriplineError, UpstreamTimeout, problem_response
from tripline.common.health import Health
from tripline.common.http_client import create_http_client
from tripline.common.logs import get_logger
from tripline.common.ratelimit import Quota, Tier
from tripline.common.ratelimit_redis import RedisLimiter
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.common.retries import RetryBudget
from tripline.common.routes import ROUTE_LABEL_KEY, UNMATCHED
from tripline.common.validation import read_body
from tripline.gateway import wsproxy
from tripline.gateway.activetrips import ActiveTrips
from tripline.gateway.admission import EdgePolicy
from tripline.gateway.clientaddr import parse_networks
from tripline.gateway.concurrency import AdaptiveLimit
from tripline.gateway.h1client import H1Pool
from tripline.gateway.loadmonitor import LoopLagMonitor
from tripline.gateway.metrics import GatewayMetrics
from tripline.gateway.proxy import (
    Forwarder,
    UpstreamRequest,
    forward_headers,
    request_target,
)
from tripline.gateway.routetable import WEBSOCKET, RouteTable
from tripline.gateway.routing import ReplicaSet, Upstream
from tripline.gateway.settings import GatewaySettings, upstream_limit_config
from tripline.gateway.shedding import LoadShedder, SheddingConfig
from tripline.gateway.status import StatusProbe
from tripline.gateway.upstreamload import UpstreamGuard

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("httpx",)

log = get_logger(__name__)


def replica_sets(settings: GatewaySettings) -> dict[Upstream, ReplicaSet]:
    return {
        Upstream.CORE: ReplicaSet(settings.core_urls or [settings.core_url]),
        Upstream.UPLOAD: ReplicaSet([settings.upload_url]),
        Upstream.TRACKING: ReplicaSet(settings.tracking_urls),
        Upstream.MONITOR: ReplicaSet([settings.monitor_url]),
    }


def quotas(settings: GatewaySettings) -> dict[Tier, Quota]:
    return {
        Tier.STANDARD: Quota(settings.limit_standard_per_min),
        Tier.CRITICAL: Quota(settings.limit_critical_per_min),
        Tier.UPLOAD: Quota(settings.limit_upload_per_min),
    }


class Gateway:
    """The gateway's two entry points: HTTP (an ASGI app) and WebSocket upgrades.

    The lifespan opens the clients and hands them over with :meth:`attach`; until then no
    request can arrive.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        table: RouteTable,
        replicas: Mapping[Upstream, ReplicaSet],
    ) -> None:
        self.settings = settings
        self.table = table
        self.replicas = replicas
        self._policy: EdgePolicy | None = None
        self._forwarder: Forwarder | None = None

    def attach(self, policy: EdgePolicy, forwarder: Forwarder) -> None:
        self._policy = policy
        self._forwarder = forwarder

    @property
    def policy(self) -> EdgePolicy:
        if self._policy is None:
            raise RuntimeError("the gateway's lifespan has not started")
        return self._policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, then proxy one HTTP request.

        Raises the :class:`TriplineError` to answer with (carrying the rate-limit headers once
        they are known) before anything was sent; :class:`ApiFastPath` renders it.
        """
        scope[ROUTE_LABEL_KEY] = UNMATCHED
        route = self.table.match(scope["method"], scope["path"]).route
        scope[ROUTE_LABEL_KEY] = route.pattern
        admission = await self.policy.admit(scope, route)
        try:
            body = await self._body(scope, receive)
            headers = forward_headers(
                scope["headers"],
                client_host=scope["client"][0] if scope.get("client") else None,
                scheme=scope.get("scheme", "http"),
                host=_header(scope, b"host"),
            )
            request = UpstreamRequest(
                method=scope["method"],
                target=request_target(scope),
                label=route.pattern,
                headers=headers,
                body=body,
                timeout_s=route.timeout_s,
                retryable=route.idempotent or bool(_header(scope, b"idempotency-key")),
            )
            if self._forwarder is None:
                raise RuntimeError("the gateway's lifespan has not started")
            slot = await self.policy.enter(route, admission)
            try:
                await self._forwarder.forward(
                    request,
                    self.replicas[route.upstream].order(),
                    send,
                    name=route.upstream.value,
                    extra_headers=admission.headers,
                )
            except UpstreamTimeout:
                # The wait it gave up on is the clearest sample of a slow upstream.
                slot.done()
                raise
            except BaseException:
                slot.abandon()
                raise
            slot.done()
        except TriplineError as error:
            error.headers.update(
                (name.decode(), value.decode()) for name, value in admission.headers
            )
            raise

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        # A request that declares no body has none (RFC 9112 §6.3): nothing to wait for.
        if not _header(scope, b"content-length") and not _header(scope, b"transfer-encoding"):
            return b""
        return await read_body(Request(scope, receive), max_bytes=self.settings.max_body_bytes)

    async def websocket(self, websocket: WebSocket) -> None:
        scope = websocket.scope
        scope[ROUTE_LABEL_KEY] = UNMATCHED
        route = self.table.match(WEBSOCKET, scope["path"]).route
        scope[ROUTE_LABEL_KEY] = route.pattern
        await self.policy.admit(scope, route)
        opened = await wsproxy.open_upstream(
            websocket,
            self.replicas[route.upstream].order(),
            open_timeout_s=self.settings.upstream_connect_timeout_s,
        )
        if isinstance(opened, Response):
            await websocket.send_denial_response(opened)
            return
        await websocket.accept(subprotocol=opened.subprotocol)
        with self.policy.metrics.open_sockets.track_inprogress():
            await wsproxy.relay(websocket, opened)


class ApiFastPath:
    """Hands ``/api/`` requests straight to the gateway, ahead of Starlette's exception
    middleware and router: every request here is the gateway's, and those two layers cost
    more than the table look-up that replaces them. Errors become problem responses exactly as
    the app's exception handlers would render them."""

    def __init__(self, app: ASGIApp, *, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        try:
            await self.gateway(scope, receive, send)
        except TriplineError as error:
            await problem_response(error, instance=scope["path"])(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes:
    for field, value in scope["headers"]:
        if field == name:
            return bytes(value)
    return b""


def create_app(settings: GatewaySettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    replicas = replica_sets(settings)
    gateway = Gateway(settings, RouteTable(), replicas)
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    verifier = TokenVerifier(settings, cache_size=settings.jwt_cache_size)

    def shedding_changed(old: int, new: int) -> None:
        metrics.shedding_level.set(new)
        log.warning("shedding level changed", old=old, new=new)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        shedder = LoadShedder(
            SheddingConfig(
                target_s=settings.shed_target_s,
                interval_s=settings.shed_interval_s,
                in_trip_lag_factor=settings.shed_in_trip_lag_factor,
            ),
            on_level_change=shedding_changed,
        )
        monitor = LoopLagMonitor(
            shedder,
            sample_interval_s=SheddingConfig().sample_interval_s,
            on_sample=metrics.loop_lag.observe,
        )
        breakers = {
            url: CircuitBreaker(
                url,
                failure_threshold=settings.breaker_failure_threshold,
                reset_timeout_s=settings.breaker_reset_s,
                half_open_max_calls=settings.breaker_half_open_calls,
                on_change=metrics.breaker_changed,
            )
            for replica_set in replicas.values()
            for url in replica_set.urls
        }
        pools = {
            url: H1Pool(
                url,
                max_connections=settings.upstream_max_connections,
                keepalive_s=settings.upstream_keepalive_s,
                connect_timeout_s=settings.upstream_connect_timeout_s,
            )
            for url in breakers
        }
        guards = {
            name: UpstreamGuard(
                name.value,
                AdaptiveLimit(upstream_limit_config(settings)),
                [breakers[url] for url in replica_set.urls],
            )
            for name, replica_set in replicas.items()
        }
        for name, guard in guards.items():
            metrics.watch_upstream(name.value, guard.limit)
        forwarder = Forwarder(
            pools,
            breakers=breakers,
            budget=RetryBudget(ratio=settings.retry_budget_ratio),
            max_attempts=settings.retry_max_attempts,
            on_retry=metrics.retried,
        )
        async with (
            open_redis(settings) as redis,
            create_http_client(
                connect_timeout_s=settings.upstream_connect_timeout_s,
                read_timeout_s=settings.health_check_timeout_s,
            ) as status_client,
        ):
            # Optional: limits fall back to this process while Redis is away.
            health.add("redis", RedisProbe(redis), required=False)
            limiter = RedisLimiter(
                redis,
                fallback_divisor=settings.gateway_replicas,
                timeout_s=settings.limit_redis_timeout_s,
                on_mode_change=metrics.degraded,
            )

            async def in_active_trip(user_id: str) -> bool:
                return bool(await redis.exists(active_trip_key(user_id)))

            gateway.attach(
                EdgePolicy(
                    verifier=verifier,
                    limiter=limiter,
                    quotas=quotas(settings),
                    shedder=shedder,
                    trusted_proxies=parse_networks(settings.trusted_proxies),
                    metrics=metrics,
                    upstreams=guards,
                    trips=ActiveTrips(
                        in_active_trip,
                        ttl_s=settings.active_trip_cache_s,
                        wait_s=settings.active_trip_wait_s,
                        on_lookup=metrics.looked_up,
                    ),
                ),
                forwarder,
            )
            app.state.status = StatusProbe(
                status_client,
                {name: replica_set.urls for name, replica_set in replicas.items()},
                monitor_url=settings.monitor_url,
                timeout_s=settings.health_check_timeout_s,
                cache_s=settings.health_cache_s,
            )
            app.state.shedder = shedder
            app.state.limiter = limiter
            app.state.breakers = breakers
            app.state.upstream_limits = {name: guard.limit for name, guard in guards.items()}
            monitor.start()
            try:
                yield
            finally:
                await monitor.stop()
                await forwarder.close()

    async def platform_health(request: Request) -> Response:
        status = await request.app.state.status.status()
        return JSONResponse(
            status.as_dict(),
            status_code=503 if status.status == "down" else 200,
            headers={"Cache-Control": "no-store"},
        )

    routes = [
        Route("/health", platform_health, methods=["GET"]),
        WebSocketRoute("/ws/{path:path}", gateway.websocket),
    ]
    return service_app(
        settings,
        routes=routes,
        lifespan=lifespan,
        health=health,
        registry=registry,
        middleware=[Middleware(ApiFastPath, gateway=gateway)],
    )
