"""Live tracking across two tracking replicas run as processes, with core in this process, on
real Redis and SecantusDB."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.core.app import create_app as create_core
from tripline.core.settings import CoreSettings
from tripline.devstack.harness import Backends, Server, python_process, scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.devstack.probes import http_ok
from tripline.devstack.testing import auth, eventually, fresh

pytestmark = pytest.mark.integration

TRIP = {"origin": {"lat": 52.52, "lng": 13.405}, "destination": {"lat": 52.53, "lng": 13.42}}


@dataclass
class Platform:
    core: httpx.AsyncClient
    replicas: list[str]
    servers: list[Server]
    database: str
    redis: Redis

    def ws(self, replica: int, trip_id: str, user: str, role: Role, **query: Any) -> str:
        token = mint_token(LOCAL_JWT_SECRET, sub=user, role=role)
        extra = "".join(f"&{name}={value}" for name, value in query.items())
        base = self.replicas[replica].replace("http://", "ws://")
        return f"{base}/ws/trips/{trip_id}?token={token}{extra}"

    async def trip(self, rider: str, driver: str) -> str:
        created = await self.core.post("/api/trips", json=TRIP, headers=auth(rider, Role.RIDER))
        trip_id: str = created.json()["id"]
        accepted = await self.core.post(
            f"/api/trips/{trip_id}/status",
            json={"status": "accepted"},
            headers=auth(driver, Role.DRIVER),
        )
        assert accepted.status_code == 200, accepted.text
        return trip_id

    async def post(
        self, replica: int, trip_id: str, driver: str, points: list[dict[str, Any]]
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.replicas[replica], timeout=scaled(10)) as client:
            return await client.post(
                "/api/tracking/location",
                json={"trip_id": trip_id, "points": points},
                headers=auth(driver, Role.DRIVER),
            )


def points(count: int, *, start: float | None = None) -> list[dict[str, Any]]:
    first = (start or time.time()) - count
    return [
        {"lat": 52.52 + n * 1e-4, "lng": 13.405, "ts": first + n, "speed": 8.0}
        for n in range(count)
    ]


@pytest.fixture
async def platform(
    backends: Backends, settings_for: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[Platform]:
    database = fresh("tracking")
    core_settings = settings_for(CoreSettings, instance_id=fresh("core"), mongo_db=database)
    redis = Redis.from_url(backends.urls.redis_url)
    async with serve_app(create_core(core_settings)) as core_url:
        servers, ports = [], []
        for name, flush_s in (("a", "3600"), ("b", "0.3")):
            port = free_port()
            ports.append(port)
            servers.append(
                python_process(
                    f"tracking-{name}",
                    "tripline.tracking",
                    {
                        **backends.env(),
                        "PORT": str(port),
                        "INSTANCE_ID": f"tracking-{name}",
                        "MONGO_DB": database,
                        "CORE_URL": core_url,
                        "HISTORY_FLUSH_S": flush_s,
                        "LOCATION_TTL_S": "2",
                        "SOCKET_BUFFER": "8",
                        "SOCKET_SEND_TIMEOUT_S": "1",
                    },
                    http_ok(f"http://127.0.0.1:{port}/health/ready"),
                    tmp_path / f"tracking-{name}.log",
                )
            )
        await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
        try:
            async with httpx.AsyncClient(base_url=core_url, timeout=scaled(10)) as core:
                yield Platform(
                    core,
                    [f"http://127.0.0.1:{port}" for port in ports],
                    servers,
                    database,
                    redis,
                )
        finally:
            await asyncio.gather(*(asyncio.to_thread(server.stop) for server in servers))
            await redis.aclose()


async def frame(socket: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), scaled(10)))
    return data


async def frames_until(socket: ClientConnection, seq: int) -> list[dict[str, Any]]:
    seen = []
    while not seen or seen[-1].get("seq", -1) < seq:
        seen.append(await frame(socket))
    return seen


async def test_a_driver_on_one_replica_reaches_riders_on_both(platform: Platform) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    async with (
        connect(platform.ws(0, trip_id, rider, Role.RIDER)) as on_a,
        connect(platform.ws(1, trip_id, rider, Role.RIDER)) as on_b,
        connect(platform.ws(1, trip_id, driver, Role.DRIVER)) as driver_socket,
    ):
        snapshots = [await frame(s) for s in (on_a, on_b, driver_socket)]
        assert {s["type"] for s in snapshots} == {"snapshot"}
        start = snapshots[0]["seq"]
        assert snapshots[0]["status"] == "accepted"
        posted = await platform.post(0, trip_id, driver, points(2))
        assert posted.status_code == 202, posted.text
        assert posted.json() == {"accepted": 2, "rejected": []}
        await driver_socket.send(
            json.dumps({"type": "location", "lat": 52.6, "lng": 13.5, "ts": time.time()})
        )
        # The driver hears its location acknowledged, not echoed back.
        assert (await frame(driver_socket))["type"] == "ack"
        for socket in (on_a, on_b):
            seen = await frames_until(socket, start + 3)
            assert [f["seq"] for f in seen] == [start + 1, start + 2, start + 3]
            assert {f["type"] for f in seen} == {"location"}
        latest = await httpx.AsyncClient().get(
            f"{platform.replicas[0]}/api/tracking/trips/{trip_id}/location",
            headers=auth(rider, Role.RIDER),
        )
        assert latest.json()["lat"] == 52.6


async def test_outsiders_cannot_watch_post_or_read(platform: Platform) -> None:
    rider, driver, stranger = fresh("rider"), fresh("driver"), fresh("stranger")
    trip_id = await platform.trip(rider, driver)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(platform.ws(0, trip_id, stranger, Role.RIDER)):
            pass
    assert refused.value.response.status_code == 404
    by_rider = await platform.post(0, trip_id, rider, points(1))
    by_other_driver = await platform.post(0, trip_id, stranger, points(1))
    assert (by_rider.status_code, by_other_driver.status_code) == (404, 404)
    async with httpx.AsyncClient(base_url=platform.replicas[1], timeout=scaled(10)) as client:
        read = await client.get(
            f"/api/tracking/trips/{trip_id}/location", headers=auth(stranger, Role.RIDER)
        )
    assert read.status_code == 404


async def test_bad_points_are_refused_one_by_one(platform: Platform) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    now = time.time()
    batch = [
        {"lat": 52.5, "lng": 13.4, "ts": now - 5},
        {"lat": 95, "lng": 13.4, "ts": now - 4},
        {"lat": 52.5, "lng": 13.4, "ts": now + 3600},
        {"lat": 52.5, "lng": 13.4, "ts": now - 86_400},
        {"lat": 52.5, "lng": "east", "ts": now - 3},
        {"lat": 40.0, "lng": -3.7, "ts": now - 2},
    ]
    answer = await platform.post(0, trip_id, driver, batch)
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 2
    assert [r["index"] for r in answer.json()["rejected"]] == [1, 2, 3, 4]
    empty = await platform.post(0, trip_id, driver, [])
    assert empty.status_code == 422


async def test_reconnecting_with_since_recovers_exactly_the_missed_events(
    platform: Platform,
) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    async with connect(platform.ws(0, trip_id, rider, Role.RIDER)) as socket:
        last = (await frame(socket))["seq"]
    await platform.post(1, trip_id, driver, points(3))
    async with connect(platform.ws(1, trip_id, rider, Role.RIDER, since=last)) as socket:
        missed = [await frame(socket) for _ in range(3)]
        assert [f["seq"] for f in missed] == [last + 1, last + 2, last + 3]
        await platform.post(0, trip_id, driver, points(1))
        live = await frame(socket)
        assert live["seq"] == last + 4
    await platform.post(0, trip_id, driver, points(100, start=time.time() - 200))
    await platform.post(0, trip_id, driver, points(60))
    async with connect(platform.ws(0, trip_id, rider, Role.RIDER, since=last)) as socket:
        snapshot = await frame(socket)
    assert (snapshot["type"], snapshot["recovered"]) == ("snapshot", False)
    assert snapshot["seq"] == last + 164
    assert snapshot["location"] is not None


async def test_a_stalled_subscriber_does_not_hold_up_the_others(platform: Platform) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    async with (
        connect(platform.ws(0, trip_id, rider, Role.RIDER), max_queue=1) as stalled,
        connect(platform.ws(0, trip_id, rider, Role.RIDER)) as lively,
    ):
        start = (await frame(lively))["seq"]
        await frame(stalled)
        for batch in range(4):
            await platform.post(
                0, trip_id, driver, points(100, start=time.time() - 400 + batch * 100)
            )
        seen = await frames_until(lively, start + 400)
        assert seen[-1]["seq"] == start + 400


async def test_the_latest_location_expires(platform: Platform) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    await platform.post(0, trip_id, driver, points(1))
    url = f"{platform.replicas[0]}/api/tracking/trips/{trip_id}/location"
    async with httpx.AsyncClient(timeout=scaled(10)) as client:
        assert (await client.get(url, headers=auth(rider, Role.RIDER))).status_code == 200

        async def gone() -> bool | None:
            answer = await client.get(url, headers=auth(rider, Role.RIDER))
            return True if answer.status_code == 404 else None

        await eventually(gone, timeout_s=10)


async def test_a_killed_replica_loses_no_history_and_none_is_written_twice(
    platform: Platform, backends: Backends
) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    answer = await platform.post(0, trip_id, driver, points(50))
    assert answer.json()["accepted"] == 50
    await asyncio.to_thread(platform.servers[0].kill)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    history = client[platform.database]["location_history"]
    try:

        async def all_written() -> int | None:
            count = await history.count_documents({"trip_id": trip_id})
            return count if count >= 50 else None

        assert await eventually(all_written, timeout_s=30) == 50
        await asyncio.sleep(scaled(1))
        assert await history.count_documents({"trip_id": trip_id}) == 50
    finally:
        await client.close()


async def test_a_draining_replica_tells_its_sockets_to_reconnect_elsewhere(
    platform: Platform,
) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    async with connect(platform.ws(1, trip_id, rider, Role.RIDER)) as socket:
        last = (await frame(socket))["seq"]
        stopping = asyncio.create_task(asyncio.to_thread(platform.servers[1].stop))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), scaled(15))
        await stopping
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    await platform.post(0, trip_id, driver, points(1))
    async with connect(platform.ws(0, trip_id, rider, Role.RIDER, since=last)) as socket:
        assert (await frame(socket))["seq"] == last + 1


async def test_a_batch_sent_again_is_recorded_once(platform: Platform) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await platform.trip(rider, driver)
    batch = points(3)
    first = await platform.post(0, trip_id, driver, batch)
    async with connect(platform.ws(1, trip_id, rider, Role.RIDER)) as socket:
        seq = (await frame(socket))["seq"]
        again = await platform.post(1, trip_id, driver, batch)
        assert first.json() == again.json() == {"accepted": 3, "rejected": []}
        await platform.post(0, trip_id, driver, points(1))
        assert (await frame(socket))["seq"] == seq + 1


async def test_a_driver_who_just_accepted_may_watch_at_once(platform: Platform) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    created = await platform.core.post("/api/trips", json=TRIP, headers=auth(rider, Role.RIDER))
    trip_id = created.json()["id"]
    async with connect(platform.ws(0, trip_id, rider, Role.RIDER)) as watching:
        assert (await frame(watching))["status"] == "requested"
        accepted = await platform.core.post(
            f"/api/trips/{trip_id}/status",
            json={"status": "accepted"},
            headers=auth(driver, Role.DRIVER),
        )
        assert accepted.status_code == 200
        async with connect(platform.ws(0, trip_id, driver, Role.DRIVER)) as driving:
            snapshot = await frame(driving)
    assert (snapshot["type"], snapshot["status"]) == ("snapshot", "accepted")
