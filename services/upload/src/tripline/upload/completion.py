"""Completing an upload: the object must be in S3 as declared, then it is queued once.

Moto, the local S3, does not enforce a presigned POST's conditions; real S3 does. Either way the
service checks what it finds (type and size) before anything is queued. A record moves from
``pending_upload`` to ``queued`` in one compare-and-set, so only one call queues the work
however many arrive; a call that finds it queued but never handed to the broker (its winner died
in between, or the broker refused) hands it over again after :data:`REQUEUE_AFTER_S`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tripline.common.documents import UploadStatus
from tripline.common.errors import NotFound, ValidationFailed
from tripline.common.mongo import Document
from tripline.upload.context import Uploads

REQUEUE_AFTER_S = 30.0


def check_object(record: Document, head: dict[str, Any] | None, max_bytes: int) -> dict[str, Any]:
    """What S3 holds for the upload, as stored on the record. Raises :class:`ValidationFailed`
    (422) when nothing was uploaded, or not what was declared."""
    if head is None:
        raise ValidationFailed("no file was uploaded yet: send it to the presigned URL first")
    size = int(head.get("ContentLength", 0))
    content_type = str(head.get("ContentType", ""))
    if content_type != record["content_type"]:
        raise ValidationFailed(
            f"the uploaded file is {content_type or 'of no type'}, "
            f"not the declared {record['content_type']}"
        )
    if not 1 <= size <= max_bytes:
        raise ValidationFailed(f"the uploaded file has {size} bytes; 1 to {max_bytes} are allowed")
    return {"size_bytes": size, "content_type": content_type, "etag": head.get("ETag")}


async def complete(uploads: Uploads, record: Document) -> Document:
    """Queue the upload's processing once; returns the record afterwards.

    Raises :class:`ValidationFailed` when S3 does not hold what was declared, and
    :class:`DependencyUnavailable` when S3, MongoDB, Redis or the broker does not answer.
    """
    status = UploadStatus(record["status"])
    if status is UploadStatus.PENDING_UPLOAD:
        head = await uploads.bucket.head(record["key"])
        found = check_object(record, head, uploads.settings.max_upload_bytes)
        if not await uploads.records.mark_queued(record["_id"], found):
            return await _current(uploads, record["_id"])
        await uploads.queue.enqueue(record["_id"])
        await uploads.records.mark_enqueued(record["_id"])
        return await _current(uploads, record["_id"])
    if status is UploadStatus.QUEUED and not record.get("enqueued") and _stale(record):
        await uploads.queue.enqueue(record["_id"])
        await uploads.records.mark_enqueued(record["_id"])
    return record


def _stale(record: Document) -> bool:
    queued_at = record.get("queued_at")
    if queued_at is None:
        return True
    waited: float = (datetime.now(UTC) - queued_at).total_seconds()
    return waited > REQUEUE_AFTER_S


async def _current(uploads: Uploads, upload_id: str) -> Document:
    record = await uploads.records.get(upload_id)
    if record is None:
        raise NotFound(f"no upload {upload_id}")
    return record
