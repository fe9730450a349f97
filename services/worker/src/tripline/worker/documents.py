"""The document task: check an uploaded document's real bytes and record the verdict, once.

The upload service queues an upload id (``tripline.documents.process``) and owns the record in
``uploads``. The task leaves the queue's positions (``documents:queue``), streams the object
from S3 into a spooled temporary file while hashing it, inspects it
(:mod:`tripline.worker.inspection`), records the verdict and metadata on the upload and on the
driver's documents (``driver_documents``), counts the finish for the measured rate and tells
the driver. A finished upload is never processed again, so a redelivered task (the worker died
mid-job: ``acks_late``) or a duplicate finishes it once. S3, MongoDB or Redis not answering is
transient and retried with backoff; after the last attempt the upload is ``failed`` and a
dead-letter entry is written to ``documents:dead``.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from celery import Celery, Task
from pymongo import MongoClient
from pymongo.collection import Collection
from redis import Redis

from tripline.common.celery_app import enqueue
from tripline.common.documents import (
    DONE_KEY,
    DRIVER_DOCUMENTS,
    QUEUE_KEY,
    RATE_WINDOW_S,
    UPLOADS,
    UploadStatus,
)
from tripline.common.logs import get_logger
from tripline.common.notifications import Notification, notification_id, notification_key
from tripline.common.queues import Task as TaskName
from tripline.common.s3 import create_s3
from tripline.worker.boot import BOOT_ID
from tripline.worker.inspection import Verdict, inspect
from tripline.worker.retrying import (
    RetryPolicy,
    TransientFailure,
    dependency_calls,
    per_process,
)
from tripline.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = get_logger(__name__)

DEAD_LETTERS = "documents:dead"
DEAD_MAX = 10_000
CHUNK_BYTES = 64 * 1024
SPOOL_BYTES = 2 * 1024 * 1024
MISSING_OBJECT_CODES = {"404", "NoSuchKey", "NotFound"}


class Outcome(StrEnum):
    VERIFIED = "verified"
    REJECTED = "rejected"
    ALREADY_FINISHED = "already_finished"
    MISSING = "missing"
    GAVE_UP = "gave_up"


class DocumentProcessor:
    """Processes uploads; one per worker process (its clients are not shared across forks)."""

    def __init__(
        self,
        *,
        db: Any,
        s3: S3Client,
        bucket: str,
        redis: Redis,
        producer: Celery,
        max_bytes: int,
        node: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._uploads: Collection[dict[str, Any]] = db[UPLOADS]
        self._drivers: Collection[dict[str, Any]] = db[DRIVER_DOCUMENTS]
        self._s3 = s3
        self._bucket = bucket
        self._redis = redis
        self._producer = producer
        self._max_bytes = max_bytes
        self._clock = clock

    def process(self, upload_id: str) -> Outcome:
        """Inspect the upload and record the verdict. Raises :class:`TransientFailure`."""
        with dependency_calls("mongodb"):
            record = self._uploads.find_one({"_id": upload_id})
        if record is None:
            log.error("upload record missing", upload_id=upload_id)
            return Outcome.MISSING
        if UploadStatus(record["status"]).finished:
            return Outcome.ALREADY_FINISHED
        with dependency_calls("redis"):
            self._redis.zrem(QUEUE_KEY, upload_id)
        # Who processes it: if that worker's heartbeat goes, the upload service hands the
        # upload over again rather than wait out the broker's visibility timeout.
        self._set_status(
            upload_id,
            UploadStatus.PROCESSING,
            {
                "processed_by": self._node,
                "processed_boot": BOOT_ID,
                "processing_at": datetime.now(UTC),
            },
        )
        verdict, digest, size = self._inspect(record)
        metadata = {**verdict.metadata, "sha256": digest, "size_bytes": size} if digest else {}
        status = UploadStatus.VERIFIED if verdict.accepted else UploadStatus.REJECTED
        self._finish(record, status, verdict.reason, metadata)
        return Outcome(status.value)

    def give_up(self, upload_id: str, reason: str) -> str:
        """Mark the upload failed and leave a dead-letter entry; returns the outcome."""
        with dependency_calls("redis"):
            self._redis.xadd(
                DEAD_LETTERS, {"upload_id": upload_id, "reason": reason[:500]}, maxlen=DEAD_MAX
            )
            self._redis.zrem(QUEUE_KEY, upload_id)
        self._set_status(
            upload_id, UploadStatus.FAILED, {"reason": "we could not check it; upload it again"}
        )
        return Outcome.GAVE_UP.value

    def _inspect(self, record: dict[str, Any]) -> tuple[Verdict, str | None, int]:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            try:
                digest, size = self._download(record["key"], spool)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in MISSING_OBJECT_CODES:
                    return Verdict(False, "the file is gone; upload it again"), None, 0
                raise TransientFailure(f"s3: {code or exc!r}") from exc
            if size > self._max_bytes:
                return (
                    Verdict(False, f"the file has {size} bytes; at most {self._max_bytes}"),
                    digest,
                    size,
                )
            if size != record["object"]["size_bytes"]:
                return (
                    Verdict(False, "the file changed after it was uploaded; upload it again"),
                    digest,
                    size,
                )
            return inspect(spool, record["content_type"]), digest, size

    def _download(self, key: str, spool: IO[bytes]) -> tuple[str, int]:
        """Stream the object into ``spool``; returns its SHA-256 and size. Stops reading past
        the size limit (the object is refused anyway)."""
        sha = hashlib.sha256()
        size = 0
        with dependency_calls("s3"):
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    sha.update(chunk)
                    size += len(chunk)
                    if size > self._max_bytes:
                        break
                    spool.write(chunk)
            finally:
                body.close()
        return sha.hexdigest(), size

    def _finish(
        self,
        record: dict[str, Any],
        status: UploadStatus,
        reason: str | None,
        metadata: dict[str, Any],
    ) -> None:
        upload_id = record["_id"]
        changes: dict[str, Any] = {"metadata": metadata, "reason": reason}
        now = datetime.fromtimestamp(self._clock(), UTC)
        document = {"upload_id": upload_id, "status": status.value, "reason": reason, "at": now}
        with dependency_calls("mongodb"):
            self._drivers.update_one(
                {"_id": record["driver_id"]},
                {"$set": {f"documents.{record['doc_type']}": document, "updated_at": now}},
                upsert=True,
            )
        self._set_status(upload_id, status, changes)
        notice = verdict_notice(record, status, reason)
        with dependency_calls("redis"):
            self._redis.zadd(DONE_KEY, {upload_id: self._clock()})
            self._redis.zremrangebyscore(DONE_KEY, "-inf", self._clock() - RATE_WINDOW_S * 2)
            key = notification_key(notice.id)
            if not self._redis.exists(key):
                self._redis.hset(key, mapping=notice.fields())  # type: ignore[arg-type]
            enqueue(self._producer, TaskName.SEND_NOTIFICATION, notice.id)

    def _set_status(self, upload_id: str, status: UploadStatus, changes: dict[str, Any]) -> None:
        unfinished = [s.value for s in UploadStatus if not s.finished]
        with dependency_calls("mongodb"):
            self._uploads.update_one(
                {"_id": upload_id, "status": {"$in": unfinished}},
                {"$set": {**changes, "status": status.value, "updated_at": datetime.now(UTC)}},
            )


def verdict_notice(
    record: dict[str, Any], status: UploadStatus, reason: str | None
) -> Notification:
    what = str(record["doc_type"]).replace("_", " ")
    message = (
        f"Your {what} was verified."
        if status is UploadStatus.VERIFIED
        else f"Your {what} was not accepted: {reason}."
    )
    return Notification(
        id=notification_id("upload-verdict", record["_id"]),
        to=f"driver:{record['driver_id']}",
        channel="push",
        message=message,
        reference=record["_id"],
    )


def create_processor(settings: WorkerSettings, producer: Celery) -> DocumentProcessor:
    """A processor with its own clients; create it in the process that uses it (after fork)."""
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        timeoutMS=settings.mongo_query_timeout_ms,
        tz_aware=True,
        journal=settings.mongo_journal,
    )
    return DocumentProcessor(
        db=mongo[settings.mongo_db],
        s3=create_s3(settings),
        bucket=settings.s3_bucket,
        redis=Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s,
        ),
        producer=producer,
        max_bytes=settings.document_max_bytes,
        node=f"{settings.service_name}@{settings.instance_id}",
    )


def register_document_tasks(app: Celery, settings: WorkerSettings) -> None:
    processor = per_process(lambda: create_processor(settings, app))

    policy = RetryPolicy(
        max_attempts=settings.document_max_attempts,
        base_s=settings.document_retry_base_s,
        max_s=settings.document_retry_max_s,
    )

    @app.task(name=TaskName.PROCESS_DOCUMENT.value, bind=True, acks_late=True, max_retries=None)
    def process_document(self: Task[Any, Any], upload_id: str) -> str:
        """Check ``upload_id``'s document; retried on transient failures up to the attempt
        limit, then failed with a dead letter. Returns the :class:`Outcome`'s value."""
        try:
            return processor().process(upload_id).value
        except TransientFailure as exc:
            return policy.retry_or_give_up(
                self,
                exc,
                give_up=lambda reason: processor().give_up(upload_id, reason),
                subject={"upload_id": upload_id},
            )
