"""The SOS archiver: moves SOS records from the Redis stream into MongoDB, losing none.

Each replica reads ``sos:records`` as its own consumer of one group; an entry is acknowledged
only once MongoDB stored it, and entries left pending by a dead replica are claimed by a live
one. It then queues the notifications of every SOS it stored, and of those that went straight to
MongoDB while Redis was down, once more: the request queued them too unless its replica died,
Redis refused, or it was a replay, and a notification's id keeps it to one message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from celery import Celery
from pymongo.asynchronous.collection import AsyncCollection
from redis.exceptions import RedisError, ResponseError

from tripline.common.errors import DependencyUnavailable, NotFound
from tripline.common.logs import get_logger
from tripline.common.mongo import Document, translate_errors
from tripline.common.tasks import stop_task
from tripline.core.context import Core
from tripline.core.sos import (
    ARCHIVE_BATCH,
    SOS_GROUP,
    SOS_STREAM,
    Sos,
    SosRecord,
    trip_parties,
)

log = get_logger(__name__)


class Archiver:
    """Moves stream entries into MongoDB's ``sos`` collection, then acknowledges them.

    Each replica reads as its own consumer of one group. An entry is acknowledged (and deleted
    from the stream) only after MongoDB stored it, so while MongoDB is down entries stay pending
    and are retried on the next round; entries pending on another consumer for longer than
    ``claim_idle_s`` are claimed, so a killed replica loses nothing. The upsert by ``sos_id``
    makes a second copy of an entry harmless.
    """

    def __init__(self, sos: Sos, *, consumer: str, claim_idle_s: float) -> None:
        self._sos = sos
        self._redis = sos.core.redis
        self._consumer = consumer
        self._claim_idle_ms = int(claim_idle_s * 1000)

    async def run(self, interval_s: float) -> None:
        """Archive every ``interval_s`` until cancelled; a failed round is logged and retried."""
        while True:
            try:
                await self.archive_once()
            except (RedisError, OSError, DependencyUnavailable) as exc:
                log.info("SOS archiving postponed", error=repr(exc))
            except Exception:
                # A bug in one round must not end archiving for the life of the replica.
                log.exception("SOS archiving round failed")
            await asyncio.sleep(interval_s)

    async def archive_once(self) -> int:
        """One round: own pending entries, entries of dead consumers, then new ones.

        Returns how many entries were stored. Raises :class:`DependencyUnavailable` (MongoDB)
        or ``RedisError`` when a round cannot finish; the rest waits for the next round.
        """
        await self._ensure_group()
        stored = 0
        for entries in (await self._read("0"), await self._claimed(), await self._read(">")):
            for entry_id, fields in entries:
                await self._store(entry_id, fields)
                stored += 1
        await self._sweep_unnotified()
        return stored

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(SOS_STREAM, SOS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str) -> list[tuple[Any, dict[Any, Any]]]:
        answer: list[Any] = await self._redis.xreadgroup(  # type: ignore[assignment]
            SOS_GROUP, self._consumer, {SOS_STREAM: start}, count=ARCHIVE_BATCH
        )
        return [entry for _stream, entries in answer or [] for entry in entries]

    async def _claimed(self) -> list[tuple[Any, dict[Any, Any]]]:
        answer = await self._redis.xautoclaim(
            SOS_STREAM, SOS_GROUP, self._consumer, self._claim_idle_ms, "0-0", count=ARCHIVE_BATCH
        )
        return list(answer[1])

    async def _store(self, entry_id: Any, raw: Mapping[Any, Any]) -> None:
        fields = {_text(name): _text(value) for name, value in raw.items()}
        try:
            record = SosRecord.from_fields(fields)
        except (KeyError, ValueError):
            log.exception("malformed SOS entry dropped", entry_id=_text(entry_id), fields=fields)
        else:
            # $set, not $setOnInsert: the worker may have created the document first, when
            # it recorded a delivery before this entry was archived. Archived as not notified
            # whatever the request did: its replica may have died before queueing them, a
            # replay queues nothing, Redis may have refused them. The sweep queues them again;
            # notification ids make that one message each.
            with translate_errors(self._sos.core.mongo_guard):
                await self._sos.records.update_one(
                    {"_id": record.sos_id},
                    {
                        "$set": record.document(),
                        "$setOnInsert": {"deliveries": [], "notified": False},
                    },
                    upsert=True,
                )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(SOS_STREAM, SOS_GROUP, entry_id)
            pipe.xdel(SOS_STREAM, entry_id)
            await pipe.execute()

    async def _sweep_unnotified(self) -> None:
        # Every archived SOS, and those written straight to MongoDB while Redis was down.
        with translate_errors(self._sos.core.mongo_guard):
            waiting = await self._sos.records.find({"notified": False}).to_list(ARCHIVE_BATCH)
        for document in waiting:
            record = SosRecord.from_document(document)
            try:
                rider_id: str | None = (await trip_parties(self._sos.core, record.trip_id))[0]
            except NotFound:
                rider_id = None
            # The live event is stale by now; the notifications still matter.
            await self._sos.notify(record, rider_id)
            with translate_errors(self._sos.core.mongo_guard):
                await self._sos.records.update_one(
                    {"_id": record.sos_id}, {"$set": {"notified": True}}
                )


@asynccontextmanager
async def running(
    core: Core, producer: Celery, records: AsyncCollection[Document]
) -> AsyncIterator[Sos]:
    """The SOS route's state and this replica's archiver, for the life of the app."""
    sos = Sos(core=core, producer=producer, records=records)
    archiver = Archiver(
        sos, consumer=core.settings.instance_id, claim_idle_s=core.settings.sos_claim_idle_s
    )
    task = asyncio.create_task(archiver.run(core.settings.sos_archive_interval_s))
    try:
        yield sos
    finally:
        await stop_task(task)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
