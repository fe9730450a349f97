"""The monitor service: dependency health, metrics, alerts and queue status for operators.

Only Redis is required for it to be ready: it must keep answering while MongoDB or S3 are
away, since reporting that is its job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from tripline.common.app import service_app
from tripline.common.health import Health
from tripline.common.mongo import MongoProbe, open_mongo
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.common.s3 import BucketProbe, open_bucket
from tripline.monitor.settings import MonitorSettings

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("redis", "pymongo", "botocore", "celery")


def create_app(settings: MonitorSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            open_redis(settings) as redis,
            open_mongo(settings) as mongo,
            open_bucket(settings) as bucket,
        ):
            app.state.redis = redis
            app.state.mongo = mongo
            app.state.bucket = bucket
            health.add("redis", RedisProbe(redis))
            health.add("mongodb", MongoProbe(mongo), required=False)
            health.add("s3", BucketProbe(bucket), required=False)
            yield

    return service_app(settings, routes=[], lifespan=lifespan, health=health)
