"""What the upload service's endpoints share for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from tripline.common.auth import TokenVerifier
from tripline.common.s3 import Bucket
from tripline.upload.queue import DocumentQueue
from tripline.upload.records import UploadRecords
from tripline.upload.settings import UploadSettings


@dataclass(frozen=True)
class Uploads:
    settings: UploadSettings
    verifier: TokenVerifier
    records: UploadRecords
    bucket: Bucket
    queue: DocumentQueue


def uploads_of(connection: HTTPConnection) -> Uploads:
    uploads: Uploads = connection.app.state.uploads
    return uploads
