"""The monitor service: dependency health, metrics, alerts and queue status for operators.

Nothing is required for it to be ready: it must keep answering while Redis, MongoDB or S3 are
away, since reporting that is its job. Its looks run in the background (:mod:`.watch`,
:mod:`.scraper`, :mod:`.evaluation`); the endpoints answer from their latest results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from tripline.common.app import run_in_background, service_app
from tripline.common.auth import TokenVerifier
from tripline.common.health import Health
from tripline.common.http_client import create_http_client
from tripline.common.mongo import MongoProbe, open_mongo
from tripline.common.mongo_pool import PoolMetrics
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.common.s3 import BucketProbe, open_bucket
from tripline.monitor.alerting import AlertEngine
from tripline.monitor.checks import ConsumerCheck, ReplicaProber
from tripline.monitor.evaluation import Evaluator
from tripline.monitor.gauges import MonitorGauges
from tripline.monitor.page import ops_routes
from tripline.monitor.queues import QueueReader
from tripline.monitor.routes import Monitor, monitor_routes
from tripline.monitor.scraper import Scraper
from tripline.monitor.series import MetricsStore
from tripline.monitor.settings import MonitorSettings
from tripline.monitor.watch import Watch
from tripline.monitor.webhook import AlertNotifier

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("redis", "pymongo", "botocore", "httpx")


def create_app(settings: MonitorSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    registry = CollectorRegistry()
    pool_metrics = PoolMetrics(settings.service_name, settings.mongo_max_pool)
    registry.register(pool_metrics)
    gauges = MonitorGauges(registry)
    targets = settings.targets()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(settings))
            mongo = await stack.enter_async_context(open_mongo(settings, pool_metrics))
            bucket = await stack.enter_async_context(open_bucket(settings))
            http = await stack.enter_async_context(
                create_http_client(
                    connect_timeout_s=settings.scrape_timeout_s,
                    read_timeout_s=settings.scrape_timeout_s,
                )
            )
            reader = QueueReader(redis)
            consumers = ConsumerCheck(reader)
            # Every dependency is optional here: the monitor reports them, it does not need them.
            health.add("redis", RedisProbe(redis), required=False)
            health.add("mongodb", MongoProbe(mongo), required=False)
            health.add("s3", BucketProbe(bucket), required=False)
            health.add("queues", consumers, required=False)
            watch = Watch(
                health,
                ReplicaProber(http, targets, timeout_s=settings.health_check_timeout_s),
                reader,
                read_timeout_s=settings.health_check_timeout_s,
                on_queues=gauges.show_queues,
                consumers=consumers,
            )
            store = MetricsStore(settings.metrics_history_s, targets)
            engine = AlertEngine(repeat_s=settings.alert_repeat_s, for_s=settings.alert_for_s)
            evaluator = Evaluator(
                settings,
                watch=watch,
                store=store,
                engine=engine,
                notifier=AlertNotifier(http, settings.alert_webhook_url),
                gauges=gauges,
            )
            scraper = Scraper(http, targets, store, timeout_s=settings.scrape_timeout_s)
            app.state.monitor = Monitor(settings, TokenVerifier(settings), watch, store, engine)
            run_in_background(stack, watch.run_health(settings.health_interval_s))
            run_in_background(stack, watch.run_queues(settings.scrape_interval_s))
            run_in_background(stack, scraper.run(settings.scrape_interval_s))
            run_in_background(stack, evaluator.run(settings.alert_eval_interval_s))
            yield

    return service_app(
        settings,
        routes=[*monitor_routes(), *ops_routes()],
        lifespan=lifespan,
        health=health,
        registry=registry,
    )
