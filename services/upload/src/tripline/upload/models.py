"""The upload API's inputs and views."""

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
    """What a driver sees of an upload record (plus queue figures when it waits)."""
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
