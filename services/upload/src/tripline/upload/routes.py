"""``/api/uploads``: a driver presigns an upload, completes it, and follows it to a verdict;
and the S3 event endpoint, which completes uploads as S3 (or MinIO) reports them."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Identity, Role, bearer_token
from tripline.common.documents import UploadStatus
from tripline.common.errors import (
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from tripline.common.logs import get_logger
from tripline.common.mongo import Document
from tripline.common.validation import parse_body, read_json
from tripline.upload.completion import complete
from tripline.upload.context import Uploads, uploads_of
from tripline.upload.delays import notice_text
from tripline.upload.models import UploadRequest, upload_view

log = get_logger(__name__)

EVENT_SECRET_HEADER = "x-tripline-event-secret"  # noqa: S105 (a header name, not a secret)


def upload_id_for(driver_id: str, idempotency_key: str | None) -> str:
    """A fresh id, or for a replayed request (same driver, same key) its first attempt's."""
    if not idempotency_key:
        return uuid.uuid4().hex
    return hashlib.sha256(f"upload\x00{driver_id}\x00{idempotency_key}".encode()).hexdigest()[:32]


async def driver(uploads: Uploads, request: Request) -> Identity:
    """The calling driver. Raises :class:`Unauthorized`, or :class:`Forbidden` for others."""
    identity = await uploads.verifier.verify(bearer_token(request))
    if identity.role is not Role.DRIVER:
        raise Forbidden("uploads are for drivers")
    return identity


async def own_upload(uploads: Uploads, identity: Identity, upload_id: str) -> Document:
    record = await uploads.records.get(upload_id)
    if record is None or record["driver_id"] != identity.user_id:
        raise NotFound(f"no upload {upload_id}")
    return record


async def presign(request: Request) -> Response:
    uploads = uploads_of(request)
    identity = await driver(uploads, request)
    body = await parse_body(request, UploadRequest)
    if body.size_bytes > uploads.settings.max_upload_bytes:
        raise ValidationFailed(
            f"size_bytes: at most {uploads.settings.max_upload_bytes} bytes may be uploaded",
            errors=[{"loc": "size_bytes", "msg": "too large"}],
        )
    upload_id = upload_id_for(identity.user_id, request.headers.get("idempotency-key"))
    record = await uploads.records.create(
        upload_id, identity.user_id, body, presign_expiry_s=uploads.settings.presign_expiry_s
    )
    expires_s = uploads.settings.presign_expiry_s
    post = await uploads.bucket.presigned_post(
        record["key"],
        content_type=record["content_type"],
        max_bytes=record["size_bytes"],
        expires_s=expires_s,
    )
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_s)
    answer = {
        "upload_id": upload_id,
        "url": post["url"],
        "fields": post["fields"],
        "key": record["key"],
        "expires_at": expires_at.isoformat(),
        "status": record["status"],
    }
    return JSONResponse(answer, status_code=201, headers={"Location": f"/api/uploads/{upload_id}"})


async def view(uploads: Uploads, record: Document) -> dict[str, Any]:
    """The driver's view of ``record``; while it waits, with where it stands (see
    :mod:`tripline.upload.models` for the fields)."""
    if UploadStatus(record["status"]) not in (UploadStatus.QUEUED, UploadStatus.PROCESSING):
        return upload_view(record)
    waiting = await uploads.queue.waiting(record["_id"])
    return upload_view(record, **waiting.fields(), notice=notice_text(record["doc_type"], waiting))


async def complete_upload(request: Request) -> Response:
    uploads = uploads_of(request)
    identity = await driver(uploads, request)
    record = await own_upload(uploads, identity, request.path_params["upload_id"])
    record = await complete(uploads, record)
    return JSONResponse(await view(uploads, record), status_code=202)


async def get_upload(request: Request) -> Response:
    uploads = uploads_of(request)
    identity = await driver(uploads, request)
    record = await own_upload(uploads, identity, request.path_params["upload_id"])
    return JSONResponse(await view(uploads, record))


def event_secret(request: Request) -> str:
    """The secret an event sender presents: our header, or ``Authorization: Bearer <secret>``,
    which is all MinIO's webhook can send (its ``auth_token``)."""
    given = request.headers.get(EVENT_SECRET_HEADER)
    if given is not None:
        return given
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def s3_events(request: Request) -> Response:
    """S3/MinIO event notifications (``{"Records": [{"eventName", "s3": {"object": {"key"}}}]}``)
    authenticated by a shared secret; each created object completes its upload. Answers 200 with
    what happened to each record, so the sender does not retry the ones that are settled."""
    uploads = uploads_of(request)
    secret = uploads.settings.s3_event_secret
    if secret is None or not hmac.compare_digest(event_secret(request), secret.get_secret_value()):
        raise Unauthorized("a valid event secret is required")
    payload = await read_json(request, max_bytes=1024 * 1024)
    records = payload.get("Records") if isinstance(payload, dict) else None
    if not isinstance(records, list):
        raise ValidationFailed("the body must be an S3 event with Records")
    outcomes = []
    for entry in records:
        outcomes.append(await _on_event(uploads, entry))
    return JSONResponse({"results": outcomes})


async def _on_event(uploads: Uploads, entry: Any) -> dict[str, Any]:
    try:
        name = str(entry["eventName"])
        key = unquote_plus(str(entry["s3"]["object"]["key"]))
    except (KeyError, TypeError):
        return {"outcome": "ignored", "reason": "not an S3 object event"}
    if not name.startswith(("ObjectCreated:", "s3:ObjectCreated:")):
        return {"key": key, "outcome": "ignored", "reason": f"event {name}"}
    record = await uploads.records.by_key(key)
    if record is None:
        return {"key": key, "outcome": "ignored", "reason": "no such upload"}
    try:
        record = await complete(uploads, record)
    except ValidationFailed as exc:
        return {"key": key, "outcome": "refused", "reason": exc.detail}
    return {"key": key, "outcome": record["status"]}


ROUTES = [
    Route("/api/uploads", presign, methods=["POST"]),
    Route("/api/uploads/{upload_id}", get_upload, methods=["GET"]),
    Route("/api/uploads/{upload_id}/complete", complete_upload, methods=["POST"]),
    Route("/internal/uploads/events", s3_events, methods=["POST"]),
]
