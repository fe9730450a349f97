"""The tracking service: live trip locations over HTTP and WebSockets, and their history.

Only Redis is required for it to be ready: live locations must keep flowing while MongoDB
(history) is away; points wait in a Redis stream until it is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from prometheus_client import CollectorRegistry, Gauge
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tripline.common.app import run_in_background, service_app
from tripline.common.auth import TokenVerifier
from tripline.common.guard import GuardMetrics, guarding
from tripline.common.health import Health
from tripline.common.http_client import http_guard
from tripline.common.mongo import MongoProbe, database, mongo_guard, open_mongo
from tripline.common.mongo_pool import PoolMetrics
from tripline.common.ratelimit_redis import RedisLimiter
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.tracking import routes, sockets
from tripline.tracking.context import Tracking
from tripline.tracking.history import HISTORY, DirectHistory, HistoryWriter
from tripline.tracking.hub import Hub
from tripline.tracking.intake import LocationIntake
from tripline.tracking.parties import Parties
from tripline.tracking.points import Rules
from tripline.tracking.settings import TrackingSettings
from tripline.tracking.store import LocationStore

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("redis", "pymongo", "httpx")


def create_app(settings: TrackingSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    registry = CollectorRegistry()
    pool_metrics = PoolMetrics(settings.service_name, settings.mongo_max_pool)
    registry.register(pool_metrics)
    watched = Gauge(
        "tracking_watched_trips",
        "Trips with at least one socket on this replica.",
        registry=registry,
    )
    open_sockets = Gauge(
        "tracking_open_sockets", "WebSockets open on this replica.", registry=registry
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(settings))
            mongo = await stack.enter_async_context(open_mongo(settings, pool_metrics))
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.core_timeout_s)
            )
            core_guard = await stack.enter_async_context(
                guarding(http_guard("core", http, f"{settings.core_url}/health/live", settings))
            )
            db_guard = await stack.enter_async_context(guarding(mongo_guard(mongo, settings)))
            history = database(mongo, settings)[HISTORY]
            guards = GuardMetrics([redis.guard, core_guard, db_guard])
            registry.register(guards)
            stack.callback(registry.unregister, guards)
            health.add("redis", RedisProbe(redis))
            health.add("mongodb", MongoProbe(mongo), required=False)
            store = LocationStore(redis)
            hub = Hub(redis, on_count=watched.set)
            stack.push_async_callback(hub.stop)
            rules = Rules(
                max_future_s=settings.max_future_s,
                max_age_s=settings.max_point_age_s,
                max_speed_mps=settings.max_speed_mps,
            )
            app.state.tracking = Tracking(
                settings=settings,
                redis=redis,
                verifier=TokenVerifier(settings),
                limiter=RedisLimiter(
                    redis,
                    fallback_divisor=settings.tracking_replicas,
                    timeout_s=settings.limit_redis_timeout_s,
                ),
                parties=Parties(
                    redis,
                    core_url=settings.core_url,
                    http=http,
                    guard=core_guard,
                    cache_s=settings.parties_cache_s,
                ),
                hub=hub,
                store=store,
                intake=LocationIntake(
                    redis,
                    store,
                    rules=rules,
                    location_ttl_s=settings.location_ttl_s,
                    fallback=DirectHistory(history, db_guard).store,
                ),
                health=health,
                open_sockets=open_sockets,
            )
            writer = HistoryWriter(
                redis,
                history,
                owner=settings.instance_id,
                retention_days=settings.history_retention_days,
            )
            run_in_background(stack, writer.run(settings.history_flush_s))
            run_in_background(stack, hub.drop_all_when_draining(health))
            yield

    app_routes = [*routes.ROUTES, WebSocketRoute("/ws/trips/{trip_id}", sockets.trip_socket)]
    return service_app(
        settings, routes=app_routes, lifespan=lifespan, health=health, registry=registry
    )
