"""Property: however presigns, completions and duplicate completions interleave (some of them
concurrent), every upload whose file arrived is handed to the worker exactly once.

The upload service runs in this process against real Redis (its own), SecantusDB and moto's S3;
no worker consumes the ``documents`` queue, so the broker's list shows every hand-over.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.common.documents import QUEUE_KEY
from tripline.common.queues import Queue
from tripline.devstack.documents import jpeg, presign, send_to_s3
from tripline.devstack.harness import Server, scaled, serve_app
from tripline.devstack.testing import auth, fresh
from tripline.upload.app import create_app
from tripline.upload.settings import UploadSettings

pytestmark = pytest.mark.integration

UPLOADS = 3
# An operation on upload i: send its file, complete it, or complete it twice at once.
operations = st.lists(
    st.tuples(st.sampled_from(["send", "complete", "complete_twice"]), st.integers(0, UPLOADS - 1)),
    max_size=12,
)


def queued_ids(messages: list[bytes]) -> Counter[str]:
    """The upload id of each Celery message waiting in the ``documents`` list."""
    ids: Counter[str] = Counter()
    for raw in messages:
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids[body[0][0]] += 1
    return ids


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=operations)
def test_every_upload_that_arrived_is_queued_exactly_once(
    steps: list[tuple[str, int]], fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    asyncio.run(run_steps(steps, fresh_redis, settings_for))


async def run_steps(
    steps: list[tuple[str, int]], fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    service_settings = settings_for(
        UploadSettings, instance_id=fresh("upload"), redis_url=redis_url, mongo_db=fresh("prop")
    )
    redis = Redis.from_url(redis_url)
    driver = fresh("driver")
    data = jpeg()
    try:
        await redis.flushdb()
        async with (
            serve_app(create_app(service_settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=scaled(10)) as service,
        ):
            presigned = [
                (await presign(service, driver, data, "image/jpeg")).json() for _ in range(UPLOADS)
            ]
            arrived: set[int] = set()
            accepted: set[int] = set()

            async def complete(i: int) -> None:
                answer = await service.post(
                    f"/api/uploads/{presigned[i]['upload_id']}/complete",
                    headers=auth(driver, Role.DRIVER),
                )
                if i in arrived:
                    assert answer.status_code == 202, answer.text
                    accepted.add(i)
                else:
                    assert answer.status_code == 422, answer.text

            for kind, i in steps:
                if kind == "send":
                    await send_to_s3(presigned[i], data, "image/jpeg")
                    arrived.add(i)
                elif kind == "complete":
                    await complete(i)
                else:
                    await asyncio.gather(complete(i), complete(i))
            queued = queued_ids(await redis.lrange(Queue.DOCUMENTS.value, 0, -1))
            expected = {presigned[i]["upload_id"] for i in accepted}
            assert set(queued) == expected
            assert all(count == 1 for count in queued.values()), queued
            assert await redis.zcard(QUEUE_KEY) == len(expected)
    finally:
        await redis.aclose()
