"""Document uploads end to end: the upload service, moto's S3 server, real Redis and
SecantusDB, and a real worker process that checks the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.common.documents import QUEUE_KEY
from tripline.devstack.documents import jpeg, pdf, png, presign, send_to_s3, upload, verdict
from tripline.devstack.harness import Backends, scaled, serve_app
from tripline.devstack.pytest_plugin import Providers
from tripline.devstack.testing import auth, eventually, fresh
from tripline.upload.app import create_app
from tripline.upload.settings import UploadSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(
    providers: Providers, settings_for: Callable[..., Any]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        UploadSettings, instance_id=fresh("upload"), mongo_db=providers.database
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(10)) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (jpeg(), "image/jpeg", {"width": 320, "height": 200}),
        (png(), "image/png", {"width": 240, "height": 240}),
        (pdf(), "application/pdf", {"pages": 2}),
    ],
)
async def test_a_valid_document_ends_verified_with_its_metadata(
    service: httpx.AsyncClient, data: bytes, content_type: str, expected: dict[str, int]
) -> None:
    driver = fresh("driver")
    upload_id = await upload(service, driver, data, content_type)
    view = await verdict(service, driver, upload_id)
    assert view["status"] == "verified", view
    assert view["metadata"] | expected == view["metadata"]
    assert view["metadata"]["size_bytes"] == len(data)
    assert len(view["metadata"]["sha256"]) == 64


async def test_bytes_that_are_not_what_was_declared_are_rejected(
    service: httpx.AsyncClient,
) -> None:
    driver = fresh("driver")
    upload_id = await upload(service, driver, png(), "image/jpeg")
    view = await verdict(service, driver, upload_id)
    assert view["status"] == "rejected"
    assert "PNG" in view["reason"]
    damaged = await upload(service, driver, pdf()[:200], "application/pdf")
    assert (await verdict(service, driver, damaged))["status"] == "rejected"


async def test_presign_validates_and_keys_stay_under_the_drivers_prefix(
    service: httpx.AsyncClient,
) -> None:
    driver = "../../etc/passwd"
    answer = await presign(service, driver, jpeg(), "image/jpeg")
    assert answer.status_code == 201
    key = answer.json()["key"]
    assert key.startswith("drivers/..%2F..%2Fetc%2Fpasswd/license/")
    assert key.count("/") == 3
    for bad in (
        {"doc_type": "passport"},
        {"content_type": "image/gif"},
        {"size_bytes": 0},
        {"size_bytes": 50 * 1024 * 1024},
        {"filename": "a/b"},
    ):
        body = {
            "doc_type": "license",
            "filename": "x",
            "content_type": "image/jpeg",
            "size_bytes": 10,
        }
        answer = await service.post("/api/uploads", json=body | bad, headers=auth("d", Role.DRIVER))
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    body = {"doc_type": "license", "filename": "x", "content_type": "image/jpeg", "size_bytes": 10}
    rider = await service.post("/api/uploads", json=body, headers=auth("r", Role.RIDER))
    assert rider.status_code == 403


async def test_idempotent_presign_completion_rules_and_ownership(
    service: httpx.AsyncClient,
) -> None:
    driver, other = fresh("driver"), fresh("driver")
    data = jpeg()
    first = await presign(service, driver, data, "image/jpeg", **{"Idempotency-Key": "k1"})
    again = await presign(service, driver, data, "image/jpeg", **{"Idempotency-Key": "k1"})
    assert first.json()["upload_id"] == again.json()["upload_id"]
    upload_id = first.json()["upload_id"]
    early = await service.post(
        f"/api/uploads/{upload_id}/complete", headers=auth(driver, Role.DRIVER)
    )
    assert early.status_code == 422
    await send_to_s3(first.json(), data, "image/jpeg")
    theirs = await service.post(
        f"/api/uploads/{upload_id}/complete", headers=auth(other, Role.DRIVER)
    )
    read = await service.get(f"/api/uploads/{upload_id}", headers=auth(other, Role.DRIVER))
    assert (theirs.status_code, read.status_code) == (404, 404)
    answers = [
        await service.post(f"/api/uploads/{upload_id}/complete", headers=auth(driver, Role.DRIVER))
        for _ in range(3)
    ]
    assert {a.status_code for a in answers} == {202}
    assert (await verdict(service, driver, upload_id))["status"] == "verified"


async def test_queue_positions_count_from_one_and_shrink_as_the_worker_drains(
    service: httpx.AsyncClient, backends: Backends, providers: Providers
) -> None:
    redis = Redis.from_url(backends.urls.redis_url)
    try:
        await asyncio.to_thread(providers.worker.pause)
        driver = fresh("driver")
        ids = [await upload(service, driver, jpeg(), "image/jpeg") for _ in range(3)]
        views = [
            (await service.get(f"/api/uploads/{i}", headers=auth(driver, Role.DRIVER))).json()
            for i in ids
        ]
        ranks = [await redis.zrank(QUEUE_KEY, i) for i in ids]
    finally:
        await asyncio.to_thread(providers.worker.resume)
        await redis.aclose()
    first = ranks[0]
    assert first is not None
    assert [v["queue_position"] for v in views] == [first + 1, first + 2, first + 3]
    # A worker paused past its heartbeat counts as gone: the wait then says paused, not seconds.
    assert all(v["paused"] or v["estimated_wait_seconds"] > 0 for v in views)
    last = ids[-1]
    seen = [views[-1]["queue_position"]]
    deadline = asyncio.get_running_loop().time() + scaled(40)
    while asyncio.get_running_loop().time() < deadline:
        view = (await service.get(f"/api/uploads/{last}", headers=auth(driver, Role.DRIVER))).json()
        if view["status"] in ("verified", "rejected", "failed"):
            break
        seen.append(view["queue_position"])
        await asyncio.sleep(0.05)
    assert seen == sorted(seen, reverse=True), seen
    for upload_id in ids:
        assert (await verdict(service, driver, upload_id))["status"] == "verified"


async def test_a_delayed_upload_tells_its_driver_once(
    providers: Providers, settings_for: Callable[..., Any]
) -> None:
    settings = settings_for(
        UploadSettings,
        instance_id=fresh("upload"),
        mongo_db=providers.database,
        delay_threshold_s=0.001,
        delay_check_interval_s=0.2,
    )
    driver = fresh("driver")
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(10)) as service,
        httpx.AsyncClient(base_url=providers.sandbox_url, timeout=scaled(10)) as sandbox,
    ):
        await asyncio.to_thread(providers.worker.pause)
        try:
            upload_id = await upload(service, driver, jpeg(), "image/jpeg")
            view = await service.get(f"/api/uploads/{upload_id}", headers=auth(driver, Role.DRIVER))
            assert view.json()["delayed"] is True
            await asyncio.sleep(scaled(1))  # several checks pass while it waits
        finally:
            await asyncio.to_thread(providers.worker.resume)

        async def notices() -> list[dict[str, Any]] | None:
            answer = await sandbox.get("/v1/notifications", params={"to": f"driver:{driver}"})
            items: list[dict[str, Any]] = answer.json()["items"]
            delayed = [item for item in items if "in line" in item["message"]]
            return delayed or None

        delayed = await eventually(notices)
        assert (await verdict(service, driver, upload_id))["status"] == "verified"
        await asyncio.sleep(scaled(0.5))
        assert len(await notices() or []) == len(delayed) == 1
        assert delayed[0]["reference"] == upload_id
