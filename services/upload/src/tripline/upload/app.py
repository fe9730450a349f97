"""The upload service: presigned S3 uploads of driver documents, queued for the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from tripline.common.app import service_app
from tripline.common.health import Health
from tripline.common.logs import get_logger
from tripline.common.mongo import MongoProbe, open_mongo
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.common.s3 import BucketProbe, S3Unavailable, open_bucket
from tripline.upload.settings import UploadSettings

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("redis", "pymongo", "botocore", "celery")

log = get_logger(__name__)


def create_app(settings: UploadSettings) -> Starlette:
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
            health.add("mongodb", MongoProbe(mongo))
            health.add("s3", BucketProbe(bucket))
            try:
                await asyncio.wait_for(bucket.ensure(), timeout=settings.health_check_timeout_s)
            except (S3Unavailable, TimeoutError) as exc:
                # Not fatal: readiness keeps retrying (and creating the bucket locally).
                log.warning(
                    "bucket not usable at start", bucket=settings.s3_bucket, error=repr(exc)
                )
            yield

    return service_app(settings, routes=[], lifespan=lifespan, health=health)
