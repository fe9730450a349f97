"""What the upload service and the worker agree on about the documents queue.

Queue positions come from a sorted set (``documents:queue``) of upload ids, scored by the order
they were queued: a position is one ``ZRANK``, never a scan of the broker's list. The worker
removes an upload when it starts processing it and records each finish in ``documents:done``
(scored by time), whose recent count gives the measured processing rate.
"""

from __future__ import annotations

from enum import StrEnum

QUEUE_KEY = "documents:queue"
QUEUE_TICKET_KEY = "documents:queue:ticket"
DONE_KEY = "documents:done"
# Finishes older than this no longer count towards the rate.
RATE_WINDOW_S = 300.0
UPLOADS = "uploads"
DRIVER_DOCUMENTS = "driver_documents"


class UploadStatus(StrEnum):
    PENDING_UPLOAD = "pending_upload"
    QUEUED = "queued"
    PROCESSING = "processing"
    VERIFIED = "verified"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (UploadStatus.VERIFIED, UploadStatus.REJECTED, UploadStatus.FAILED)
