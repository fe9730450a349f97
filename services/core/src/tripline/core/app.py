"""The core service: users, trips and analytics today; SOS and payments are next.

Records live in MongoDB (each service owns its collections); profiles, trips and searches are
cached in two layers (this process, then Redis) that every replica invalidates together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette

from tripline.common.app import service_app
from tripline.common.auth import TokenVerifier
from tripline.common.cache import CacheEvent, TwoLayerCache
from tripline.common.errors import DependencyUnavailable
from tripline.common.health import Health
from tripline.common.logs import get_logger
from tripline.common.mongo import MongoProbe, database, open_mongo
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.core import analytics, sos, sos_archive, trip_routes, user_routes
from tripline.core.context import Core
from tripline.core.repository import TripRepository, UserRepository
from tripline.core.settings import CoreSettings

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("httpx", "redis", "pymongo", "celery")

log = get_logger(__name__)


def create_app(settings: CoreSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    registry = CollectorRegistry()
    cache_events = Counter(
        "core_cache_events",
        "Cache look-ups per cache and outcome (local_hit, redis_hit, miss, fallback).",
        ["cache", "event"],
        registry=registry,
    )

    def count(namespace: str, event: CacheEvent) -> None:
        cache_events.labels(namespace, event.value).inc()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(settings))
            mongo = await stack.enter_async_context(open_mongo(settings))
            health.add("redis", RedisProbe(redis))
            health.add("mongodb", MongoProbe(mongo))
            db = database(mongo, settings)
            caches = {
                name: TwoLayerCache(
                    redis, namespace=name, local_ttl_s=settings.local_cache_ttl_s, on_event=count
                )
                for name in ("profile", "trip", "search")
            }
            for cache in caches.values():
                await cache.start()
                stack.push_async_callback(cache.stop)
            trips = TripRepository(db)
            try:
                await trips.ensure_indexes()
            except DependencyUnavailable as exc:
                # Serve what can be served; the indexes are made on the next start.
                log.warning("trip indexes not ensured: MongoDB unavailable", error=str(exc))
            app.state.core = Core(
                settings=settings,
                verifier=TokenVerifier(settings),
                redis=redis,
                users=UserRepository(db),
                trips=trips,
                profiles_cache=caches["profile"],
                trips_cache=caches["trip"],
                search_cache=caches["search"],
            )
            app.state.sos = await stack.enter_async_context(
                sos_archive.running(app.state.core, db[sos.SOS_COLLECTION])
            )
            yield

    routes = [*user_routes.ROUTES, *trip_routes.ROUTES, *sos.ROUTES, *analytics.ROUTES]
    return service_app(settings, routes=routes, lifespan=lifespan, health=health, registry=registry)
