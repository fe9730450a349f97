"""Round trips through the real MongoDB wire protocol server and the real S3 server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, ReadPreference

from tripline.common.mongo import Document, create_mongo, database, read_heavy
from tripline.common.s3 import Bucket, S3Unavailable, create_s3
from tripline.common.settings import ServiceSettings
from tripline.devstack.harness import scaled
from tripline.devstack.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings_for: Callable[..., Any]) -> ServiceSettings:
    built: ServiceSettings = settings_for(
        ServiceSettings,
        mongo_db=f"t{uuid.uuid4().hex[:12]}",
        s3_bucket=f"b-{uuid.uuid4().hex[:12]}",
    )
    return built


@pytest.fixture
async def mongo(settings: ServiceSettings) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = create_mongo(settings)
    yield client
    await client.drop_database(settings.mongo_db)
    await client.close()


async def test_mongo_round_trip_through_the_pool(
    mongo: AsyncMongoClient[Document], settings: ServiceSettings
) -> None:
    trips = database(mongo, settings)["trips"]
    inserted = await trips.insert_one({"status": "requested", "rider_id": "r1"})
    found = await read_heavy(database(mongo, settings))["trips"].find_one(
        {"_id": inserted.inserted_id}
    )
    assert found is not None
    assert (found["status"], found["rider_id"]) == ("requested", "r1")


async def test_mongo_pool_and_read_preference_follow_the_settings(
    mongo: AsyncMongoClient[Document], settings: ServiceSettings
) -> None:
    pool = mongo.options.pool_options
    assert (pool.min_pool_size, pool.max_pool_size) == (10, 100)
    assert pool.wait_queue_timeout == settings.mongo_wait_queue_timeout_ms / 1000
    assert mongo.options.timeout == settings.mongo_query_timeout_ms / 1000
    assert read_heavy(database(mongo, settings)).read_preference == (
        ReadPreference.SECONDARY_PREFERRED
    )


async def test_presigned_post_uploads_to_s3(settings: ServiceSettings) -> None:
    bucket = Bucket(create_s3(settings), settings.s3_bucket, create_if_missing=True)
    await bucket.ensure()
    key = f"drivers/d1/{uuid.uuid4().hex}.pdf"
    body = b"%PDF-1.4\n%tripline test\n"
    post = await bucket.presigned_post(key, content_type="application/pdf", max_bytes=1024)
    assert {"key", "policy", "x-amz-signature", "Content-Type"} <= set(post["fields"])
    async with httpx.AsyncClient(timeout=scaled(10)) as client:
        answer = await client.post(
            post["url"],
            data=post["fields"],
            files={"file": ("doc.pdf", body, "application/pdf")},
        )
    assert answer.status_code in (200, 201, 204), answer.text
    head = await bucket.head(key)
    assert head is not None
    assert head["ContentLength"] == len(body)
    assert await bucket.head(f"{key}.missing") is None


async def test_missing_bucket_is_an_error_unless_creation_is_allowed(
    settings: ServiceSettings,
) -> None:
    strict = Bucket(create_s3(settings), f"absent-{uuid.uuid4().hex[:8]}")
    with pytest.raises(S3Unavailable):
        await strict.ensure()


async def test_unreachable_s3_is_translated(settings_for: Callable[..., Any]) -> None:
    settings = settings_for(ServiceSettings, s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    bucket = Bucket(create_s3(settings), "anything")
    with pytest.raises(S3Unavailable):
        await bucket.ensure()
