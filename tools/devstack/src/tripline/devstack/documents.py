"""Documents for upload tests, and the driver's side of an upload: presign, send, wait."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image
from pypdf import PdfWriter

from tripline.common.auth import Role
from tripline.devstack.harness import scaled
from tripline.devstack.testing import auth, eventually


def jpeg(size: tuple[int, int] = (320, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (240, 240), (30, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def pdf(pages: int = 2) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


async def presign(
    service: httpx.AsyncClient, driver: str, data: bytes, content_type: str, **extra: Any
) -> httpx.Response:
    body = {
        "doc_type": extra.pop("doc_type", "license"),
        "filename": "doc",
        "content_type": content_type,
        "size_bytes": len(data),
    }
    return await service.post("/api/uploads", json=body, headers=auth(driver, Role.DRIVER) | extra)


async def send_to_s3(presigned: dict[str, Any], data: bytes, content_type: str) -> None:
    async with httpx.AsyncClient(timeout=scaled(10)) as s3:
        answer = await s3.post(
            presigned["url"],
            data=presigned["fields"],
            files={"file": ("doc", data, content_type)},
        )
    assert answer.status_code in (200, 204), answer.text


async def upload(service: httpx.AsyncClient, driver: str, data: bytes, content_type: str) -> str:
    presigned = await presign(service, driver, data, content_type)
    assert presigned.status_code == 201, presigned.text
    await send_to_s3(presigned.json(), data, content_type)
    done = await service.post(
        f"/api/uploads/{presigned.json()['upload_id']}/complete", headers=auth(driver, Role.DRIVER)
    )
    assert done.status_code == 202, done.text
    assert done.json()["status"] in ("queued", "processing", "verified", "rejected")
    upload_id: str = presigned.json()["upload_id"]
    return upload_id


async def verdict(service: httpx.AsyncClient, driver: str, upload_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        answer = await service.get(f"/api/uploads/{upload_id}", headers=auth(driver, Role.DRIVER))
        view: dict[str, Any] = answer.json()
        return view if view["status"] in ("verified", "rejected", "failed") else None

    return await eventually(finished, timeout_s=40)
