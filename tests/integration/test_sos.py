"""SOS end to end: core on real Redis and SecantusDB, a real worker process, the sandbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from tripline.common.auth import Role
from tripline.common.channels import events_channel
from tripline.core.app import create_app
from tripline.core.settings import CoreSettings
from tripline.devstack.backends import mongo_spec
from tripline.devstack.harness import Backends, Server, scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.devstack.pytest_plugin import Providers
from tripline.devstack.testing import auth, eventually, fresh

pytestmark = pytest.mark.integration

ORIGIN = {"lat": 52.52, "lng": 13.405}
DESTINATION = {"lat": 52.53, "lng": 13.42}
SOS_BODY = {"lat": 52.521, "lng": 13.406, "message": "help"}


@pytest.fixture
async def sandbox(providers: Providers) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=providers.sandbox_url, timeout=scaled(10)) as client:
        yield client
        await client.put("/control/notifications", json={"mode": "ok"})


@pytest.fixture
async def redis(backends: Backends) -> AsyncIterator[Redis]:
    client = Redis.from_url(backends.urls.redis_url)
    yield client
    await client.aclose()


def core_settings(settings_for: Callable[..., Any], **overrides: Any) -> CoreSettings:
    settings: CoreSettings = settings_for(
        CoreSettings,
        instance_id=fresh("core"),
        sos_archive_interval_s=0.2,
        sos_operations_address=f"{fresh('ops')}@tripline.test",
        **overrides,
    )
    return settings


@pytest.fixture
async def core(
    providers: Providers, settings_for: Callable[..., Any]
) -> AsyncIterator[tuple[httpx.AsyncClient, CoreSettings]]:
    settings = core_settings(settings_for, mongo_db=providers.database)
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(10)) as client,
    ):
        yield client, settings


@pytest.fixture
async def sos_documents(backends: Backends, providers: Providers) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    yield client[providers.database]["sos"]
    await client.close()


async def request_trip(core: httpx.AsyncClient, rider: str) -> str:
    answer = await core.post(
        "/api/trips",
        json={"origin": ORIGIN, "destination": DESTINATION},
        headers=auth(rider, Role.RIDER),
    )
    assert answer.status_code == 201, answer.text
    trip_id: str = answer.json()["id"]
    return trip_id


async def sent_to(sandbox: httpx.AsyncClient, to: str) -> list[dict[str, Any]]:
    answer = await sandbox.get("/v1/notifications", params={"to": to})
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_sos_is_stored_published_and_notified(
    core: tuple[httpx.AsyncClient, CoreSettings],
    sandbox: httpx.AsyncClient,
    redis: Redis,
    sos_documents: Any,
) -> None:
    client, settings = core
    rider = fresh("rider")
    contact = "+4915112345678"
    profile = await client.patch(
        "/api/users/me",
        json={"emergency_contact": {"name": "Kim", "phone": contact}},
        headers=auth(rider, Role.RIDER),
    )
    assert profile.status_code == 200, profile.text
    trip_id = await request_trip(client, rider)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(events_channel(trip_id))
        answer = await client.post(
            f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=auth(rider, Role.RIDER)
        )
        assert answer.status_code == 202, answer.text
        sos_id = answer.json()["id"]
        assert answer.json()["status"] == "accepted"

        async def sos_event() -> dict[str, Any] | None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            return None if message is None else dict(json.loads(message["data"]))

        event = await eventually(sos_event)
    assert event["type"] == "sos"
    assert (event["sos_id"], event["by"], event["message"]) == (sos_id, rider, "help")

    async def delivered_to_both() -> dict[str, Any] | None:
        document: dict[str, Any] | None = await sos_documents.find_one({"_id": sos_id})
        if document is None or len(document.get("deliveries", [])) < 2 or "by" not in document:
            return None
        return document

    document = await eventually(delivered_to_both)
    assert (document["trip_id"], document["by"], document["lat"]) == (trip_id, rider, 52.521)
    assert document["created_at"] is not None
    recipients = {delivery["to"] for delivery in document["deliveries"]}
    assert recipients == {settings.sos_operations_address, contact}
    operations = await sent_to(sandbox, settings.sos_operations_address)
    assert [item["reference"] for item in operations] == [sos_id]


async def test_a_replayed_sos_keeps_its_id_and_notifies_once(
    core: tuple[httpx.AsyncClient, CoreSettings], sandbox: httpx.AsyncClient, sos_documents: Any
) -> None:
    client, settings = core
    rider = fresh("rider")
    trip_id = await request_trip(client, rider)
    headers = auth(rider, Role.RIDER) | {"Idempotency-Key": fresh("key")}
    first = await client.post(f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=headers)
    second = await client.post(f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=headers)
    assert (first.status_code, second.status_code) == (202, 202)
    sos_id = first.json()["id"]
    assert second.json()["id"] == sos_id

    async def delivered() -> dict[str, Any] | None:
        document: dict[str, Any] | None = await sos_documents.find_one({"_id": sos_id})
        return document if document and document.get("deliveries") and "by" in document else None

    await eventually(delivered)
    assert await sos_documents.count_documents({"trip_id": trip_id}) == 1
    assert len(await sent_to(sandbox, settings.sos_operations_address)) == 1


async def test_outsiders_and_bad_bodies_are_refused(
    core: tuple[httpx.AsyncClient, CoreSettings],
) -> None:
    client, _settings = core
    trip_id = await request_trip(client, fresh("rider"))
    outsider = await client.post(
        f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=auth(fresh("other"), Role.RIDER)
    )
    assert outsider.status_code == 404
    missing = await client.post(
        f"/api/trips/{fresh('trip')}/sos", json=SOS_BODY, headers=auth(fresh("r"), Role.RIDER)
    )
    assert missing.status_code == 404
    invalid = await client.post(
        f"/api/trips/{trip_id}/sos", json={"lat": 91, "lng": "x"}, headers=auth("r", Role.RIDER)
    )
    assert invalid.status_code == 422


async def test_sos_is_accepted_without_mongodb_and_archived_once_it_returns(
    settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_port()
    mongo = Server(mongo_spec(port, tmp_path / "mongo"), tmp_path / "mongo.log", port)
    mongo_url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    await asyncio.to_thread(mongo.start)
    settings = core_settings(
        settings_for,
        mongo_url=mongo_url,
        mongo_db=fresh("down"),
        mongo_server_selection_timeout_ms=1000,
        mongo_query_timeout_ms=1000,
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        async with (
            serve_app(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=scaled(10)) as core,
        ):
            rider = fresh("rider")
            trip_id = await request_trip(core, rider)
            await asyncio.to_thread(mongo.stop)
            answer = await core.post(
                f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=auth(rider, Role.RIDER)
            )
            assert answer.status_code == 202, answer.text
            sos_id = answer.json()["id"]
            await asyncio.to_thread(mongo.start)
            documents = client[settings.mongo_db]["sos"]

            async def archived() -> int | None:
                count = await documents.count_documents({"_id": sos_id, "by": rider})
                return count or None

            assert await eventually(archived) == 1
            await asyncio.sleep(scaled(0.5))
            assert await documents.count_documents({"_id": sos_id}) == 1
    finally:
        await client.close()
        await asyncio.to_thread(mongo.stop)


async def test_a_failing_provider_is_retried_until_it_delivers_once(
    core: tuple[httpx.AsyncClient, CoreSettings], sandbox: httpx.AsyncClient, sos_documents: Any
) -> None:
    client, settings = core
    rider = fresh("rider")
    trip_id = await request_trip(client, rider)
    failing = await sandbox.put("/control/notifications", json={"mode": "fail"})
    assert failing.status_code == 200, failing.text
    before = (await sandbox.get("/control")).json()["notifications"]["failed"]
    answer = await client.post(
        f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=auth(rider, Role.RIDER)
    )
    assert answer.status_code == 202
    sos_id = answer.json()["id"]

    async def failed_twice() -> bool | None:
        snapshot = (await sandbox.get("/control")).json()["notifications"]
        return True if snapshot["failed"] >= before + 2 else None

    await eventually(failed_twice)
    assert await sent_to(sandbox, settings.sos_operations_address) == []
    await sandbox.put("/control/notifications", json={"mode": "ok"})

    async def delivered() -> list[dict[str, Any]] | None:
        return await sent_to(sandbox, settings.sos_operations_address) or None

    assert [item["reference"] for item in await eventually(delivered)] == [sos_id]

    async def audited() -> dict[str, Any] | None:
        document: dict[str, Any] | None = await sos_documents.find_one({"_id": sos_id})
        return document if document and document.get("deliveries") else None

    document = await eventually(audited)
    assert [d["to"] for d in document["deliveries"]] == [settings.sos_operations_address]


async def test_without_redis_the_sos_goes_to_mongodb_and_is_notified_later(
    fresh_redis: Server, settings_for: Callable[..., Any], sos_documents: Any, providers: Providers
) -> None:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    settings = core_settings(
        settings_for, redis_url=redis_url, mongo_db=providers.database, redis_socket_timeout_s=0.5
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(20)) as core,
    ):
        rider = fresh("rider")
        trip_id = await request_trip(core, rider)
        await asyncio.to_thread(fresh_redis.stop)
        answer = await core.post(
            f"/api/trips/{trip_id}/sos", json=SOS_BODY, headers=auth(rider, Role.RIDER)
        )
        assert answer.status_code == 202, answer.text
        sos_id = answer.json()["id"]
        document = await sos_documents.find_one({"_id": sos_id})
        assert (document["by"], document["notified"]) == (rider, False)
        await asyncio.to_thread(fresh_redis.start)

        async def notified() -> dict[str, Any] | None:
            found: dict[str, Any] | None = await sos_documents.find_one(
                {"_id": sos_id, "notified": True}
            )
            return found

        await eventually(notified)
        broker = Redis.from_url(redis_url)
        try:
            keys = [key async for key in broker.scan_iter("notification:*")]
            references = {await broker.hget(key, "reference") for key in keys}
        finally:
            await broker.aclose()
        assert sos_id.encode() in references


async def test_with_redis_and_mongodb_down_an_sos_is_refused_with_503(
    fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    settings = core_settings(
        settings_for,
        redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0",
        mongo_url=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        mongo_server_selection_timeout_ms=500,
        redis_socket_timeout_s=0.5,
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(20)) as core,
    ):
        await asyncio.to_thread(fresh_redis.stop)
        rider = fresh("rider")
        answer = await core.post(
            f"/api/trips/{fresh('trip')}/sos", json=SOS_BODY, headers=auth(rider, Role.RIDER)
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"].endswith("dependency-unavailable")
