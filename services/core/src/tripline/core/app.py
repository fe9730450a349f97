"""The core service: users, trips, SOS and payments (records in MongoDB, cache in Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from tripline.common.app import service_app
from tripline.common.health import Health
from tripline.common.mongo import MongoProbe, open_mongo
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.core.settings import CoreSettings

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("httpx", "redis", "pymongo", "celery")


def create_app(settings: CoreSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_redis(settings) as redis, open_mongo(settings) as mongo:
            app.state.redis = redis
            app.state.mongo = mongo
            health.add("redis", RedisProbe(redis))
            health.add("mongodb", MongoProbe(mongo))
            yield

    return service_app(settings, routes=[], lifespan=lifespan, health=health)
