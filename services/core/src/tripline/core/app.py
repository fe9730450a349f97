"""The core service: users, trips, analytics, SOS and payments.

Records live in MongoDB (each service owns its collections); profiles, trips and searches are
cached in two layers (this process, then Redis) that every replica invalidates together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.applications import Starlette

from tripline.common.app import run_in_background, service_app
from tripline.common.auth import TokenVerifier
from tripline.common.breaker import BREAKER_STATE_VALUES, BreakerState
from tripline.common.cache import CacheEvent, TwoLayerCache
from tripline.common.celery_app import create_celery
from tripline.common.errors import DependencyUnavailable
from tripline.common.guard import GuardMetrics, guarding
from tripline.common.health import Health
from tripline.common.logs import get_logger
from tripline.common.mongo import MongoProbe, database, mongo_guard, open_mongo
from tripline.common.mongo_pool import PoolMetrics
from tripline.common.providers import provider_breaker
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.core import analytics, payments, sos, sos_archive, trip_routes, user_routes
from tripline.core.context import Core
from tripline.core.payment_provider import PaymentProvider
from tripline.core.pending_writes import PendingWrites
from tripline.core.repository import TripRepository, UserRepository
from tripline.core.settings import CoreSettings
from tripline.core.stale import StaleCopies

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("httpx", "redis", "pymongo", "celery")

log = get_logger(__name__)


def create_app(settings: CoreSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    registry = CollectorRegistry()
    pool_metrics = PoolMetrics(settings.service_name, settings.mongo_max_pool)
    registry.register(pool_metrics)
    cache_events = Counter(
        "core_cache_events",
        "Cache look-ups per cache and outcome (local_hit, redis_hit, miss, fallback).",
        ["cache", "event"],
        registry=registry,
    )

    breaker_state = Gauge(
        "core_breaker_state",
        "Each outside provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
        ["breaker"],
        registry=registry,
    )
    payment_outcomes = Counter(
        "core_payments",
        "Payment requests answered, per outcome (confirmed, pending, declined).",
        ["outcome"],
        registry=registry,
    )

    def count(namespace: str, event: CacheEvent) -> None:
        cache_events.labels(namespace, event.value).inc()

    def show_breaker(name: str, old: BreakerState, new: BreakerState) -> None:
        breaker_state.labels(name).set(BREAKER_STATE_VALUES[new])
        log.warning("breaker changed", breaker=name, old=old.value, new=new.value)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(settings))
            mongo = await stack.enter_async_context(open_mongo(settings, pool_metrics))
            # Optional: every cache falls back to MongoDB, so core serves without Redis; a
            # Redis outage must not take every core replica out of its Service at once.
            health.add("redis", RedisProbe(redis), required=False)
            health.add("mongodb", MongoProbe(mongo))
            db = database(mongo, settings)
            guard = await stack.enter_async_context(guarding(mongo_guard(mongo, settings)))
            guards = GuardMetrics([redis.guard, guard])
            registry.register(guards)
            stack.callback(registry.unregister, guards)
            caches = {
                name: TwoLayerCache(
                    redis, namespace=name, local_ttl_s=settings.local_cache_ttl_s, on_event=count
                )
                for name in ("profile", "trip", "search")
            }
            for cache in caches.values():
                await cache.start()
                stack.push_async_callback(cache.stop)
            trips = TripRepository(db, guard=guard)
            try:
                await trips.ensure_indexes()
            except DependencyUnavailable as exc:
                # Serve what can be served; the indexes are made on the next start.
                log.warning("trip indexes not ensured: MongoDB unavailable", error=str(exc))
            producer = create_celery(settings, main="tripline.core")
            stack.callback(producer.close)
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.payment_timeout_s)
            )
            breaker = provider_breaker(
                "payments",
                settings,
                failures=settings.payment_breaker_failures,
                reset_s=settings.payment_breaker_reset_s,
                on_change=show_breaker,
            )
            breaker_state.labels("payments").set(BREAKER_STATE_VALUES[BreakerState.CLOSED])
            stale = StaleCopies(redis, keep_for_s=settings.stale_copy_keep_s)
            writes = PendingWrites(redis, owner=settings.instance_id)
            app.state.core = core = Core(
                settings=settings,
                verifier=TokenVerifier(settings),
                redis=redis,
                users=UserRepository(db, guard=guard),
                trips=trips,
                profiles_cache=caches["profile"],
                trips_cache=caches["trip"],
                search_cache=caches["search"],
                stale=stale,
                writes=writes,
                mongo_guard=guard,
            )
            writes.register(
                user_routes.PROFILE_WRITE,
                lambda write: user_routes.apply_profile_write(core, write),
            )
            writes.register(
                trip_routes.CREATE_WRITE, lambda write: trip_routes.apply_create_write(core, write)
            )
            writes.register(
                trip_routes.STATUS_WRITE, lambda write: trip_routes.apply_status_write(core, write)
            )
            run_in_background(stack, writes.run(settings.pending_writes_interval_s))
            app.state.sos = await stack.enter_async_context(
                sos_archive.running(app.state.core, producer, db[sos.SOS_COLLECTION])
            )
            app.state.payments = payments.Payments(
                records=payments.PaymentRecords(db[payments.PAYMENTS], guard=guard),
                provider=PaymentProvider(settings.payment_sandbox_url, http=http, breaker=breaker),
                producer=producer,
                on_outcome=lambda outcome: payment_outcomes.labels(outcome).inc(),
            )
            yield

    routes = [
        *user_routes.ROUTES,
        *trip_routes.ROUTES,
        *sos.ROUTES,
        *payments.ROUTES,
        *analytics.ROUTES,
    ]
    return service_app(settings, routes=routes, lifespan=lifespan, health=health, registry=registry)
