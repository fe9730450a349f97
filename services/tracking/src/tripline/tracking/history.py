"""Location history: points wait in the Redis stream ``tracking:points`` and are written to
MongoDB's ``location_history`` in bulk, every ``HISTORY_FLUSH_S``, by one replica at a time.

Nothing is lost: an entry leaves the stream only after MongoDB stored it, so a replica killed
mid-flush leaves its entries for the next writer. Nothing is written twice: a point's id is its
trip and time (a driver is in one place at a time), so a rewrite after such a crash meets a
duplicate key and is skipped. Retention: a TTL index removes points ``HISTORY_RETENTION_DAYS``
after they were recorded; archive them elsewhere first if they must outlive that. While Redis
does not take points at all, intake writes them here directly (:class:`DirectHistory`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.guard import DependencyGuard
from tripline.common.lease import Lease
from tripline.common.logs import get_logger
from tripline.common.mongo import Document, is_unavailable, translate_errors
from tripline.tracking.intake import POINTS_STREAM

log = get_logger(__name__)

HISTORY = "location_history"
LEASE = "tracking:history:lease"
BATCH = 1000
DUPLICATE_KEY = 11000


def history_document(fields: Mapping[str, str]) -> Document:
    """The MongoDB document of one stream entry. Raises ``KeyError``/``ValueError`` for an
    entry :mod:`tripline.tracking.intake` did not write."""

    def number(name: str) -> float | None:
        value = fields.get(name, "")
        return float(value) if value else None

    ts = float(fields["ts"])
    return {
        "_id": f"{fields['trip_id']}:{fields['ts']}",
        "trip_id": fields["trip_id"],
        "driver_id": fields["driver_id"],
        "lat": float(fields["lat"]),
        "lng": float(fields["lng"]),
        "heading": number("heading"),
        "speed": number("speed"),
        "ts": ts,
        "at": datetime.fromtimestamp(ts, UTC),
        "flagged": fields.get("flagged") == "1",
    }


async def insert_points(points: AsyncCollection[Document], documents: list[Document]) -> None:
    """Insert history documents; one already stored (its id is trip and time) is skipped.
    Raises pymongo's errors for anything else."""
    if not documents:
        return
    try:
        await points.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise


class DirectHistory:
    """Where intake writes accepted points when Redis does not take them: straight into
    ``location_history``, through MongoDB's guard, so a driver's points survive a Redis outage
    (they are not published live then: the live path is Redis)."""

    def __init__(self, points: AsyncCollection[Document], guard: DependencyGuard) -> None:
        self._points = points
        self._guard = guard

    async def store(self, entries: Sequence[Mapping[str, str]]) -> None:
        """Store the points as :mod:`tripline.tracking.intake` writes them to its stream.
        Raises :class:`DependencyUnavailable` when MongoDB does not take them."""
        with translate_errors(self._guard):
            await insert_points(self._points, [history_document(fields) for fields in entries])


class HistoryWriter:
    def __init__(
        self,
        redis: Redis,
        points: AsyncCollection[Document],
        *,
        owner: str,
        retention_days: int,
        lease_s: float = 60.0,
    ) -> None:
        self._redis = redis
        self._points = points
        self._retention_s = retention_days * 86_400
        self._lease = Lease(redis, LEASE, owner=owner, ttl_s=lease_s)
        self._indexed = False

    async def run(self, interval_s: float) -> None:
        """Flush every ``interval_s`` while this replica holds the lease; forever."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                log.warning("history not flushed: Redis unavailable", error=repr(exc))
            except PyMongoError as exc:
                # Entries stay in the stream either way: retried next round, never dropped.
                if is_unavailable(exc):
                    log.warning("history not flushed: MongoDB unavailable", error=repr(exc))
                else:
                    log.exception("history not flushed: MongoDB refused the batch")

    async def flush(self) -> int:
        """Write buffered points to MongoDB until the stream is empty; returns how many entries
        left the stream. Raises the Redis and MongoDB clients' errors."""
        written = 0
        while await self._lease.hold():
            entries = await self._redis.xrange(POINTS_STREAM, count=BATCH)
            if not entries:
                return written
            await self._ensure_indexes()
            documents, ids = [], []
            for entry_id, raw in entries:
                if entry_id is None:
                    continue
                ids.append(entry_id)
                fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
                try:
                    documents.append(history_document(fields))
                except (KeyError, ValueError):
                    log.exception("unreadable history entry skipped", fields=fields)
            await self._insert(documents)
            await self._redis.xdel(POINTS_STREAM, *ids)
            written += len(ids)
        return written

    async def _insert(self, documents: list[Document]) -> None:
        await insert_points(self._points, documents)

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        await self._points.create_indexes(
            [
                IndexModel([("trip_id", ASCENDING), ("ts", ASCENDING)], name="trip_ts"),
                IndexModel(
                    [("at", ASCENDING)], name="retention", expireAfterSeconds=self._retention_s
                ),
            ]
        )
        self._indexed = True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
