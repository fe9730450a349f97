"""Upload records in MongoDB's ``uploads`` collection (the worker updates them too).

Every method may raise :class:`DependencyUnavailable` when MongoDB does not answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from tripline.common.documents import UploadStatus
from tripline.common.errors import Conflict
from tripline.common.guard import DependencyGuard
from tripline.common.mongo import Document, translate_errors
from tripline.upload.models import ContentType, UploadRequest

# How long an upload that was never completed is kept after its presigned POST expired.
ABANDONED_AFTER_S = 86_400


def object_key(driver_id: str, upload_id: str, request: UploadRequest) -> str:
    """``drivers/<driver>/<doc type>/<upload id><ext>``: the driver id is percent-encoded (no
    ``/`` or ``..`` survives it) and nothing the client sends beyond the enums takes part."""
    extension = ContentType(request.content_type).extension
    return f"drivers/{quote(driver_id, safe='')}/{request.doc_type.value}/{upload_id}{extension}"


class UploadRecords:
    def __init__(
        self,
        uploads: AsyncCollection[Document],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        guard: DependencyGuard | None = None,
    ) -> None:
        self._guard = guard
        self._uploads = uploads
        self._clock = clock

    async def ensure_indexes(self) -> None:
        with translate_errors(self._guard):
            await self._uploads.create_indexes(
                [
                    IndexModel([("driver_id", ASCENDING), ("created_at", ASCENDING)]),
                    IndexModel([("key", ASCENDING)], unique=True),
                    # Uploads never completed disappear a day after their presigned POST
                    # expired; completed ones lose the field and stay.
                    IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0),
                ]
            )

    async def create(
        self, upload_id: str, driver_id: str, request: UploadRequest, *, presign_expiry_s: int
    ) -> Document:
        """A new ``pending_upload`` record, or for a replayed id the existing one.

        Raises :class:`Conflict` when the id is taken by another driver or another request.
        """
        now = self._clock()
        record: Document = {
            "_id": upload_id,
            "driver_id": driver_id,
            **request.model_dump(mode="json"),
            "key": object_key(driver_id, upload_id, request),
            "status": UploadStatus.PENDING_UPLOAD.value,
            "enqueued": False,
            "expire_at": now + timedelta(seconds=presign_expiry_s + ABANDONED_AFTER_S),
            "created_at": now,
            "updated_at": now,
        }
        with translate_errors(self._guard):
            try:
                await self._uploads.insert_one(record)
            except DuplicateKeyError:
                existing = await self._uploads.find_one({"_id": upload_id})
            else:
                return record
        same = existing is not None and all(
            existing.get(name) == value for name, value in request.model_dump(mode="json").items()
        )
        if existing is None or existing["driver_id"] != driver_id or not same:
            raise Conflict("this Idempotency-Key was used for another upload")
        return existing

    async def get(self, upload_id: str) -> Document | None:
        with translate_errors(self._guard):
            return await self._uploads.find_one({"_id": upload_id})

    async def by_key(self, key: str) -> Document | None:
        with translate_errors(self._guard):
            return await self._uploads.find_one({"key": key})

    async def mark_queued(self, upload_id: str, found: dict[str, Any]) -> bool:
        """Move a ``pending_upload`` record to ``queued``; False when another call did first.

        An ``update_one`` rather than ``find_one_and_update``: SecantusDB (the local MongoDB)
        serves the latter with a full collection scan whatever the filter (57 ms against
        1.6 ms at 7,000 uploads, measured), and the caller reads the record afterwards anyway.
        """
        now = self._clock()
        update = {
            "$set": {
                "status": UploadStatus.QUEUED.value,
                "object": found,
                "queued_at": now,
                "updated_at": now,
            },
            "$unset": {"expire_at": ""},
        }
        with translate_errors(self._guard):
            result = await self._uploads.update_one(
                {"_id": upload_id, "status": UploadStatus.PENDING_UPLOAD.value}, update
            )
        return result.modified_count == 1

    async def never_handed_over(self, *, queued_before: datetime, limit: int) -> list[str]:
        """Ids of uploads queued before ``queued_before`` whose work never reached the broker
        (it or Redis refused, or the replica died in between), oldest first."""
        query = {
            "status": UploadStatus.QUEUED.value,
            "enqueued": False,
            "queued_at": {"$lt": queued_before},
        }
        with translate_errors(self._guard):
            found = await self._uploads.find(query, {"_id": 1}).sort("queued_at", 1).to_list(limit)
        return [str(document["_id"]) for document in found]

    async def processing_before(
        self, before: datetime, *, limit: int
    ) -> list[tuple[str, str | None, str | None]]:
        """``(id, worker node, the node's run)`` of uploads a worker started before ``before``
        and has not finished, oldest first."""
        query = {"status": UploadStatus.PROCESSING.value, "processing_at": {"$lt": before}}
        projection = {"_id": 1, "processed_by": 1, "processed_boot": 1}
        with translate_errors(self._guard):
            found = await (
                self._uploads.find(query, projection).sort("processing_at", 1).to_list(limit)
            )
        return [
            (str(doc["_id"]), doc.get("processed_by"), doc.get("processed_boot")) for doc in found
        ]

    async def requeue_orphan(self, upload_id: str, node: str | None) -> bool:
        """Put an upload whose worker died back to ``queued`` (not enqueued); False when it
        moved on meanwhile."""
        now = self._clock()
        with translate_errors(self._guard):
            result = await self._uploads.update_one(
                {
                    "_id": upload_id,
                    "status": UploadStatus.PROCESSING.value,
                    "processed_by": node,
                },
                {
                    "$set": {
                        "status": UploadStatus.QUEUED.value,
                        "enqueued": False,
                        "updated_at": now,
                    }
                },
            )
        return result.modified_count == 1

    async def mark_enqueued(self, upload_id: str) -> None:
        with translate_errors(self._guard):
            await self._uploads.update_one({"_id": upload_id}, {"$set": {"enqueued": True}})

    async def claim_delay_notice(self, upload_id: str) -> bool:
        """True for the one caller that gets to tell the driver the upload is delayed."""
        with translate_errors(self._guard):
            result = await self._uploads.update_one(
                {"_id": upload_id, "delay_notified": {"$ne": True}},
                {"$set": {"delay_notified": True}},
            )
        return result.modified_count == 1
