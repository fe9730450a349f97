"""The MongoDB client: ``AsyncMongoClient`` with a bounded pool and timeouts on every call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Any

from pymongo import AsyncMongoClient, ReadPreference
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError

from tripline.common.errors import DependencyUnavailable
from tripline.common.guard import DependencyGuard
from tripline.common.mongo_pool import PoolMetrics
from tripline.common.settings import ServiceSettings

Document = dict[str, Any]


def is_unavailable(exc: PyMongoError) -> bool:
    """True when ``exc`` means the database did not answer (no server to select, a dropped
    connection, a timeout), as opposed to refusing the request."""
    return exc.timeout or isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError)


@contextmanager
def translate_errors(guard: DependencyGuard | None = None) -> Iterator[None]:
    """Re-raise pymongo's "not answering" errors as ``DependencyUnavailable("mongodb")``; any
    other ``PyMongoError`` (an invalid command or document) is a bug and propagates.

    With a ``guard`` (:func:`mongo_guard`) the block is not run while MongoDB is known not to
    answer: ``DependencyUnavailable`` is raised at once instead of after a timeout.
    """
    with guard.call() if guard is not None else nullcontext():
        try:
            yield
        except PyMongoError as exc:
            if not is_unavailable(exc):
                raise
            raise DependencyUnavailable("mongodb") from exc


def mongo_guard(client: AsyncMongoClient[Document], settings: ServiceSettings) -> DependencyGuard:
    """The guard for ``client``'s calls (run its probe with ``guard.guarding``): it opens on
    the first call MongoDB does not answer and pings in the background until it does."""
    return DependencyGuard(
        "mongodb",
        probe=MongoProbe(client),
        is_outage=lambda exc: isinstance(exc, DependencyUnavailable),
        refusal=lambda: DependencyUnavailable(
            "mongodb", "MongoDB is not answering; probed in the background"
        ),
        probe_interval_s=settings.dependency_probe_interval_s,
        probe_timeout_s=settings.dependency_probe_timeout_s,
    )


def create_mongo(
    settings: ServiceSettings, pool_metrics: PoolMetrics | None = None
) -> AsyncMongoClient[Document]:
    """Create a client; it connects in the background, so start-up never waits for MongoDB.

    Pool 10..100 by default; a request that cannot get a connection within the wait-queue
    timeout fails instead of queueing forever, and every operation is bounded by
    ``MONGO_QUERY_TIMEOUT_MS`` (client-side ``timeoutMS``). ``pool_metrics`` (already in the
    app's registry) counts the pool's use.
    """
    return AsyncMongoClient(
        settings.mongo_url,
        minPoolSize=settings.mongo_min_pool,
        maxPoolSize=settings.mongo_max_pool,
        waitQueueTimeoutMS=settings.mongo_wait_queue_timeout_ms,
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        connectTimeoutMS=settings.mongo_server_selection_timeout_ms,
        timeoutMS=settings.mongo_query_timeout_ms,
        journal=settings.mongo_journal,
        appname=settings.service_name,
        tz_aware=True,
        event_listeners=[pool_metrics] if pool_metrics is not None else [],
    )


def database(
    client: AsyncMongoClient[Document], settings: ServiceSettings
) -> AsyncDatabase[Document]:
    return client[settings.mongo_db]


def read_heavy(db: AsyncDatabase[Document]) -> AsyncDatabase[Document]:
    """The same database reading from secondaries when there are any (search, history)."""
    return db.with_options(read_preference=ReadPreference.SECONDARY_PREFERRED)


@asynccontextmanager
async def open_mongo(
    settings: ServiceSettings, pool_metrics: PoolMetrics | None = None
) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = create_mongo(settings, pool_metrics)
    try:
        yield client
    finally:
        await client.close()


class MongoProbe:
    """Readiness probe: the ``ping`` command."""

    def __init__(self, client: AsyncMongoClient[Document]) -> None:
        self._client = client

    async def __call__(self) -> None:
        await self._client.admin.command("ping")
