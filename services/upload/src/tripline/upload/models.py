"""The upload API's inputs and views.

While an upload is ``queued`` or ``processing`` its view carries where it stands:

- ``queue_position``: 1 for the next document to be checked, 0 once checking started;
- ``estimated_wait_seconds``: whole seconds until it is checked, from the workers really
  consuming the queue; ``null`` while the queue is paused;
- ``delayed``: the wait is over the notice threshold, or unknown because the queue is paused
  (the driver is also notified, once);
- ``paused`` (added to the contract): true while no worker consumes the documents queue, so
  nothing moves and no wait can honestly be estimated;
- ``notice`` (added to the contract): the sentence the driver is told when ``delayed``
  (the position and the wait, or that checking is paused), else ``null``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class DocType(StrEnum):
    LICENSE = "license"
    INSURANCE = "insurance"
    REGISTRATION = "registration"
    PROFILE_PHOTO = "profile_photo"


class ContentType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    PDF = "application/pdf"

    @property
    def extension(self) -> str:
        return {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}[self.value]


class UploadRequest(BaseModel):
    """Body of ``POST /api/uploads``. The file name is only shown back; keys never use it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    doc_type: DocType
    filename: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f/\\]+$")
    content_type: ContentType
    size_bytes: StrictInt = Field(ge=1)


def upload_view(record: dict[str, Any], **queue: Any) -> dict[str, Any]:
    """What a driver sees of an upload record (plus ``queue``'s figures when it waits)."""
    view = {
        "upload_id": record["_id"],
        "doc_type": record["doc_type"],
        "filename": record["filename"],
        "content_type": record["content_type"],
        "size_bytes": record["size_bytes"],
        "status": record["status"],
        "created_at": record["created_at"].isoformat(),
    }
    if record.get("reason"):
        view["reason"] = record["reason"]
    if record.get("metadata"):
        view["metadata"] = record["metadata"]
    return view | queue
