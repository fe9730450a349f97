"""The upload service: presigned S3 uploads of driver documents, queued for the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from tripline.common.app import run_in_background, service_app
from tripline.common.auth import TokenVerifier
from tripline.common.celery_app import create_celery
from tripline.common.documents import UPLOADS
from tripline.common.errors import DependencyUnavailable
from tripline.common.guard import GuardMetrics, guarding
from tripline.common.health import Health
from tripline.common.logs import get_logger
from tripline.common.mongo import MongoProbe, database, mongo_guard, open_mongo
from tripline.common.mongo_pool import PoolMetrics
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.common.s3 import BucketProbe, S3Unavailable, open_bucket
from tripline.upload import routes
from tripline.upload.context import Uploads
from tripline.upload.delays import DelayNotifier
from tripline.upload.handover import Handover
from tripline.upload.queue import DocumentQueue
from tripline.upload.records import UploadRecords
from tripline.upload.settings import UploadSettings

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("redis", "pymongo", "botocore", "celery")

log = get_logger(__name__)


def create_app(settings: UploadSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    registry = CollectorRegistry()
    pool_metrics = PoolMetrics(settings.service_name, settings.mongo_max_pool)
    registry.register(pool_metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(settings))
            mongo = await stack.enter_async_context(open_mongo(settings, pool_metrics))
            bucket = await stack.enter_async_context(open_bucket(settings))
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
            producer = create_celery(settings, main="tripline.upload")
            stack.callback(producer.close)
            guard = await stack.enter_async_context(guarding(mongo_guard(mongo, settings)))
            guards = GuardMetrics([redis.guard, guard, *([bucket.guard] if bucket.guard else [])])
            registry.register(guards)
            stack.callback(registry.unregister, guards)
            records = UploadRecords(database(mongo, settings)[UPLOADS], guard=guard)
            try:
                await records.ensure_indexes()
            except DependencyUnavailable as exc:
                log.warning("upload indexes not ensured: MongoDB unavailable", error=str(exc))
            queue = DocumentQueue(
                redis,
                producer,
                expected_s=settings.document_expected_s,
                delay_threshold_s=settings.delay_threshold_s,
            )
            app.state.uploads = Uploads(
                settings=settings,
                verifier=TokenVerifier(settings),
                records=records,
                bucket=bucket,
                queue=queue,
            )
            notifier = DelayNotifier(
                redis,
                producer,
                queue=queue,
                records=records,
                owner=settings.instance_id,
                lease_s=settings.delay_check_interval_s * 2,
            )
            run_in_background(stack, notifier.run(settings.delay_check_interval_s))
            handover = Handover(records, queue, redis)
            run_in_background(stack, handover.run(settings.handover_interval_s))
            yield

    return service_app(
        settings, routes=routes.ROUTES, lifespan=lifespan, health=health, registry=registry
    )
