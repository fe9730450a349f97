"""The Python client SDK against the whole platform run as processes: its retries meet the
gateway's real 429 and 503, its offline queue survives a gateway outage and the app's death,
its trip subscription survives the death of the tracking replica that held it, and its last
known location stays readable while the platform cannot be reached."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.harness import scaled, scrape_metric
from tripline.devstack.platform import PlatformStack
from tripline.devstack.stack import url
from tripline.devstack.testing import eventually, fresh
from tripline_client.backoff import Backoff
from tripline_client.client import Tripline
from tripline_client.config import ClientConfig
from tripline_client.delivery import Delivery
from tripline_client.errors import RateLimited, ServiceUnavailable
from tripline_client.frames import TripEvent
from tripline_client.outbox_store import Outcome

pytestmark = pytest.mark.integration

ORIGIN = (52.52, 13.405)
DESTINATION = (52.53, 13.42)
ACTOR = Path(__file__).with_name("client_actor.py")
ACTOR_READY = "ALL QUEUED"
# Long enough for any Retry-After the gateway sends (a rate-limit window is 60 s): the SDK
# then waits instead of giving up, and the test sees how long it chose to wait.
PATIENT = Backoff(base_s=0.1, cap_s=120.0)
# Fast enough that a test never waits on the SDK's own timers for long.
QUICK = Backoff(base_s=0.05, cap_s=0.5)
SOS_STREAM = "sos:records"


@dataclass
class RecordingSleep:
    """An injected sleep: remembers each wait the SDK asked for and waits only a moment."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(min(delay, 0.05))


@dataclass
class HeldSleep:
    """An injected sleep that can be held: while held, every wait blocks until released."""

    delays: list[float] = field(default_factory=list)
    waiting: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.released.set()

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.waiting += 1
        try:
            await self.released.wait()
        finally:
            self.waiting -= 1
        await asyncio.sleep(min(delay, 0.05))

    async def held(self) -> bool | None:
        return True if self.waiting else None


@dataclass
class Exchanges:
    """What went over the wire of one client: each attempt's request and answer."""

    requests: list[httpx.Request] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)

    async def on_request(self, request: httpx.Request) -> None:
        self.requests.append(request)

    async def on_response(self, response: httpx.Response) -> None:
        self.responses.append(response)


def token_for(user: str, role: Role) -> str:
    return mint_token(LOCAL_JWT_SECRET, sub=user, role=role)


def quick_config(**changes: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "timeout_s": scaled(10),
        "max_retries": 1,
        "backoff": QUICK,
        "probe_backoff": QUICK,
        "subscription_backoff": QUICK,
        "action_wait_s": scaled(15),
    }
    values.update(changes)
    return ClientConfig(**values)


def sdk(
    platform: PlatformStack,
    token: str,
    data_dir: Path,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **config: Any,
) -> Tripline:
    """A client of the platform's gateway with quick timers (start it with ``async with``)."""
    return Tripline(
        platform.gateway_url, token, data_dir, config=quick_config(**config), sleep=sleep
    )


def watched_sdk(
    platform: PlatformStack,
    token: str,
    data_dir: Path,
    *,
    max_retries: int,
    sleep: RecordingSleep,
    exchanges: Exchanges,
) -> Tripline:
    """A client whose transport records every attempt and every wait between attempts."""
    http = httpx.AsyncClient(
        base_url=platform.gateway_url,
        event_hooks={"request": [exchanges.on_request], "response": [exchanges.on_response]},
    )
    config = quick_config(max_retries=max_retries, backoff=PATIENT)
    return Tripline(platform.gateway_url, token, data_dir, config=config, sleep=sleep, http=http)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    return None if value is None else float(value)


def remaining(response: httpx.Response) -> int | None:
    """What the ``RateLimit`` header says is left of the quota (``"standard";r=3;t=60``)."""
    found = re.search(r";r=(\d+)", response.headers.get("ratelimit", ""))
    return None if found is None else int(found[1])


def track(count: int, *, start_lat: float = 52.52) -> list[dict[str, Any]]:
    """``count`` points a second apart, ending now, about 11 m apart: a car in town."""
    first = time.time() - count - 1
    return [
        {"lat": round(start_lat + n * 1e-4, 6), "lng": 13.405, "ts": first + n, "speed": 11.0}
        for n in range(count)
    ]


async def applied(delivery: Awaitable[Delivery]) -> None:
    """Wait for a critical action's outcome (sent now or from the queue) and check it applied."""
    outcome = await asyncio.wait_for((await delivery).outcome(), scaled(30))
    assert outcome.applied, outcome.error


async def accepted_trip(rider: Tripline, driver: Tripline) -> str:
    """A trip the rider requested and the driver accepted, through the SDK."""
    trip = await rider.create_trip(origin=ORIGIN, destination=DESTINATION)
    assert trip["status"] == "requested"
    await applied(driver.change_status(trip["id"], "accepted"))
    trip_id: str = trip["id"]
    return trip_id


async def gateway_serves(platform: PlatformStack) -> bool | None:
    """True when a request through the gateway reaches core (a fresh user, so polling never
    meets the rate limit)."""
    headers = {"Authorization": f"Bearer {token_for(fresh('probe'), Role.RIDER)}"}
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=scaled(5)) as client:
        try:
            answer = await client.get("/api/users/me", headers=headers)
        except httpx.HTTPError:
            return None
    return True if answer.status_code == 200 else None


async def restart(platform: PlatformStack, name: str) -> None:
    await asyncio.to_thread(platform.servers[name].start)
    if name == "gateway" or name == "core":
        await eventually(lambda: gateway_serves(platform))


@asynccontextmanager
async def stopped(platform: PlatformStack, name: str) -> AsyncIterator[None]:
    """``name`` stopped for the block, then started again and serving."""
    await asyncio.to_thread(platform.servers[name].stop)
    try:
        yield
    finally:
        await restart(platform, name)


# -- retries against the gateway's real refusals ---------------------------------------------


async def test_retries_wait_at_least_the_retry_after_of_a_real_429(
    client_platform: PlatformStack, tmp_path: Path
) -> None:
    token = token_for(fresh("rider"), Role.RIDER)
    sleep, exchanges = RecordingSleep(), Exchanges()
    async with watched_sdk(
        client_platform,
        token,
        tmp_path / "patient",
        max_retries=3,
        sleep=sleep,
        exchanges=exchanges,
    ) as patient:
        for _ in range(25):
            await patient.me()
            if remaining(exchanges.responses[-1]) == 0:
                break
        assert remaining(exchanges.responses[-1]) == 0, "the standard tier never ran out"

        async with sdk(client_platform, token, tmp_path / "hasty", max_retries=0) as hasty:
            with pytest.raises(RateLimited) as refused:
                await hasty.me()
        assert refused.value.status == 429
        assert refused.value.retry_after is not None
        assert refused.value.retry_after >= 1
        assert refused.value.user_message == "Too many requests. Please wait a moment."

        before, slept = len(exchanges.responses), len(sleep.delays)
        with pytest.raises(RateLimited) as exhausted:
            await patient.me()
    attempts = exchanges.responses[before:]
    delays = sleep.delays[slept:]
    assert [answer.status_code for answer in attempts] == [429] * 4
    waits = [retry_after(answer) for answer in attempts]
    assert all(wait is not None and wait >= 1 for wait in waits), waits
    # One wait between each two attempts, each at least what the 429 before it asked for.
    assert len(delays) == 3
    for delay, wait in zip(delays, waits[:3], strict=True):
        assert wait is not None
        assert delay >= wait
    assert exhausted.value.retry_after == waits[-1]


async def circuit_open(platform: PlatformStack) -> bool | None:
    """True once the gateway answers core's routes with ``circuit-open`` (each look is a
    request that fails on the stopped core, which is what opens the breaker)."""
    headers = {"Authorization": f"Bearer {token_for(fresh('probe'), Role.RIDER)}"}
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=scaled(5)) as client:
        answer = await client.get("/api/users/me", headers=headers)
    kind = answer.json().get("type", "") if answer.status_code >= 400 else ""
    return True if answer.status_code == 503 and kind.endswith("/circuit-open") else None


async def test_retries_honour_a_real_503_and_stop_after_max_retries(
    client_platform: PlatformStack, tmp_path: Path
) -> None:
    token = token_for(fresh("rider"), Role.RIDER)
    sleep, exchanges = RecordingSleep(), Exchanges()
    async with watched_sdk(
        client_platform, token, tmp_path, max_retries=3, sleep=sleep, exchanges=exchanges
    ) as client:
        for _ in range(2):
            await client.me()
        async with stopped(client_platform, "core"):
            await eventually(lambda: circuit_open(client_platform))
            sent_before, answered_before = len(exchanges.requests), len(exchanges.responses)
            slept = len(sleep.delays)
            with pytest.raises(ServiceUnavailable) as unavailable:
                await client.me()
            attempts = exchanges.requests[sent_before:]
            answers = exchanges.responses[answered_before:]
            delays = sleep.delays[slept:]
    assert len(attempts) == len(answers) == 4
    assert answers[0].status_code == 503
    assert all(answer.status_code in (502, 503) for answer in answers)
    assert unavailable.value.transient
    waits = [retry_after(answer) for answer in answers]
    assert waits[0] is not None, "the open breaker's 503 carries Retry-After"
    assert len(delays) == 3
    # Each wait is at least the Retry-After of the answer before it, when it had one.
    for delay, wait in zip(delays, waits[:3], strict=True):
        assert delay >= (wait or 0)


# -- the offline queue across an outage and the app's death ----------------------------------


@dataclass
class Outcomes:
    """Every outcome a client's ``on_outcome`` reported."""

    seen: list[Outcome] = field(default_factory=list)

    def __call__(self, outcome: Outcome) -> None:
        self.seen.append(outcome)

    def kinds(self) -> list[str]:
        return [outcome.action.kind.value for outcome in self.seen]


async def replayed(client: Tripline, outcomes: Outcomes, count: int) -> bool | None:
    return True if not client.pending_actions() and len(outcomes.seen) >= count else None


async def queue_offline(
    platform: PlatformStack, token: str, data_dir: Path, trip_id: str, points: list[Any]
) -> list[dict[str, Any]]:
    """Run the driver's app in a process of its own against the stopped gateway; returns what
    it printed once all three actions were queued, then kills it (SIGKILL)."""
    order = {
        "base_url": platform.gateway_url,
        "token": token,
        "data_dir": str(data_dir),
        "trip_id": trip_id,
        "points": points,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ACTOR),
        json.dumps(order),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(scaled(60)):
            while (line := (await process.stdout.readline()).decode().strip()) != ACTOR_READY:
                if not line:
                    break
                lines.append(json.loads(line))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        _, errors = await process.communicate()
    assert line == ACTOR_READY, errors.decode()[-3000:]
    return lines


async def sos_documents(platform: PlatformStack, trip_id: str) -> list[dict[str, Any]]:
    """The trip's SOS records in MongoDB, once the archiver has moved every streamed one."""
    redis = Redis.from_url(platform.backends.urls.redis_url)
    try:
        await eventually(lambda: _stream_empty(redis))
    finally:
        await redis.aclose()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.backends.urls.mongo_url)
    try:
        return await mongo["tripline"]["sos"].find({"trip_id": trip_id}).to_list()
    finally:
        await mongo.close()


async def _stream_empty(redis: Redis) -> bool | None:
    return True if await redis.xlen(SOS_STREAM) == 0 else None


async def test_actions_queued_offline_by_a_dead_app_are_applied_once_after_restart(
    client_platform: PlatformStack, tmp_path: Path
) -> None:
    rider_token = token_for(fresh("rider"), Role.RIDER)
    driver_token = token_for(fresh("driver"), Role.DRIVER)
    driver_dir, copy_dir = tmp_path / "driver", tmp_path / "driver-copy"
    points = track(3)
    async with (
        sdk(client_platform, rider_token, tmp_path / "rider") as rider,
        sdk(client_platform, driver_token, driver_dir) as driver,
    ):
        trip_id = await accepted_trip(rider, driver)

    async with stopped(client_platform, "gateway"):
        printed = await queue_offline(client_platform, driver_token, driver_dir, trip_id, points)
        *deliveries, pending = printed
        assert [d["kind"] for d in deliveries] == ["sos", "trip_status", "locations"]
        assert [d["state"] for d in deliveries] == ["queued"] * 3
        for delivery, noun in zip(deliveries, ("SOS", "trip update", "location"), strict=True):
            assert delivery["message"].startswith("No connection."), delivery
            assert noun in delivery["message"]
        ids = [d["id"] for d in deliveries]
        assert pending["pending"] == ids
        # The dead app's queue, read by the next one, before anything could be sent.
        async with sdk(client_platform, driver_token, driver_dir, max_retries=0) as reopened:
            assert [action.id for action in reopened.pending_actions()] == ids
            assert [action.kind.value for action in reopened.pending_actions()] == [
                "sos",
                "trip_status",
                "locations",
            ]
        # The same queue once more, for an app whose answers will all be lost (below).
        shutil.copytree(driver_dir, copy_dir)

    outcomes = Outcomes()
    replaying = sdk(client_platform, driver_token, driver_dir)
    replaying.on_outcome(outcomes)
    async with replaying:
        await eventually(lambda: replayed(replaying, outcomes, 3))
    assert outcomes.kinds() == ["sos", "trip_status", "locations"]
    assert [outcome.action.id for outcome in outcomes.seen] == ids
    assert all(outcome.applied for outcome in outcomes.seen), outcomes.seen
    first_answer = outcomes.seen[0].result
    assert first_answer is not None
    sos_id = first_answer["id"]

    # A second app on the copy sends the very same actions again, as an app does whose answers
    # were lost: the platform answers them as before and applies nothing twice.
    again = Outcomes()
    lost = sdk(client_platform, driver_token, copy_dir)
    lost.on_outcome(again)
    async with lost, sdk(client_platform, rider_token, tmp_path / "rider") as rider:
        await eventually(lambda: replayed(lost, again, 3))
        assert all(outcome.applied for outcome in again.seen), again.seen
        assert again.seen[0].result == outcomes.seen[0].result
        trip = await rider.get_trip(trip_id)
        latest = await rider.latest_location(trip_id)
    assert trip["status"] == "arrived"
    assert latest is not None
    assert {k: latest[k] for k in ("lat", "lng", "ts")} == {
        k: points[-1][k] for k in ("lat", "lng", "ts")
    }
    documents = await sos_documents(client_platform, trip_id)
    assert [document["_id"] for document in documents] == [sos_id]


# -- live tracking across a replica's death --------------------------------------------------


@dataclass
class Watcher:
    """The rider's side of a subscription: every event the app was given."""

    events: list[TripEvent] = field(default_factory=list)

    def locations(self) -> list[TripEvent]:
        return [event for event in self.events if event.type == "location"]

    async def saw(self, count: int) -> bool | None:
        return True if len(self.locations()) >= count else None


async def follow(subscription: AsyncIterator[TripEvent], watcher: Watcher) -> None:
    async for event in subscription:
        watcher.events.append(event)


async def socket_holder(platform: PlatformStack) -> str | None:
    """The tracking replica with a socket open (the rider's is the only one), if any."""
    holders = []
    for name, port in (
        ("tracking", platform.ports.tracking),
        ("tracking-2", platform.ports.tracking_2),
    ):
        async with httpx.AsyncClient(base_url=url(port), timeout=scaled(5)) as replica:
            try:
                open_sockets = await scrape_metric(replica, "tracking_open_sockets")
            except httpx.HTTPError:
                continue
        if open_sockets:
            holders.append(name)
    return holders[0] if len(holders) == 1 else None


async def test_a_subscription_survives_the_death_of_its_tracking_replica(
    client_platform: PlatformStack, tmp_path: Path
) -> None:
    rider_token = token_for(fresh("rider"), Role.RIDER)
    driver_token = token_for(fresh("driver"), Role.DRIVER)
    points = track(12)
    batches = [points[0:4], points[4:8], points[8:12]]
    watcher, reconnect = Watcher(), HeldSleep()
    async with (
        sdk(client_platform, rider_token, tmp_path / "rider", sleep=reconnect) as rider,
        sdk(client_platform, driver_token, tmp_path / "driver") as driver,
    ):
        trip_id = await accepted_trip(rider, driver)
        async with rider.subscribe(trip_id) as subscription:
            following = asyncio.create_task(follow(subscription, watcher))
            try:
                await eventually(lambda: _snapshot(watcher))
                await applied(driver.send_locations(trip_id, batches[0]))
                await eventually(lambda: watcher.saw(4))
                holder = await eventually(lambda: socket_holder(client_platform))
                survivor = "tracking-2" if holder == "tracking" else "tracking"
                # The rider's app waits to reconnect until the next batch is recorded, so those
                # events can reach it only through the replay that `since` asks for.
                reconnect.hold()
                await asyncio.to_thread(client_platform.servers[holder].kill)
                try:
                    await eventually(reconnect.held)
                    assert not subscription.connected
                    await applied(driver.send_locations(trip_id, batches[1]))
                    assert len(watcher.locations()) == 4
                    reconnect.release()
                    await eventually(lambda: watcher.saw(8))
                    assert await socket_holder(client_platform) == survivor
                    await applied(driver.send_locations(trip_id, batches[2]))
                    await eventually(lambda: watcher.saw(12))
                    assert subscription.reconnects >= 1
                finally:
                    reconnect.release()
                    await restart(client_platform, holder)
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
    start = watcher.events[0]
    assert start.type == "snapshot"
    assert start.seq is not None
    locations = watcher.locations()
    assert [event.seq for event in locations] == list(range(start.seq + 1, start.seq + 13))
    assert [event.data["lat"] for event in locations] == [point["lat"] for point in points]


async def _snapshot(watcher: Watcher) -> bool | None:
    return True if watcher.events else None


# -- the last known location while disconnected ----------------------------------------------


async def test_the_last_known_location_is_served_while_the_gateway_is_away(
    client_platform: PlatformStack, tmp_path: Path
) -> None:
    rider_token = token_for(fresh("rider"), Role.RIDER)
    driver_token = token_for(fresh("driver"), Role.DRIVER)
    points = track(3)
    watcher = Watcher()
    async with (
        sdk(client_platform, rider_token, tmp_path / "rider") as rider,
        sdk(client_platform, driver_token, tmp_path / "driver") as driver,
    ):
        trip_id = await accepted_trip(rider, driver)
        async with rider.subscribe(trip_id) as subscription:
            following = asyncio.create_task(follow(subscription, watcher))
            try:
                await eventually(lambda: _snapshot(watcher))
                await applied(driver.send_locations(trip_id, points))
                await eventually(lambda: watcher.saw(3))
                live = await rider.latest_location(trip_id)
                assert live is not None
                assert "stale" not in live
                async with stopped(client_platform, "gateway"):
                    offline = await rider.latest_location(trip_id)
                    kept = subscription.last_known
                    # From disk: the app's next run has it too.
                    async with sdk(client_platform, rider_token, tmp_path / "rider") as later:
                        assert await later.latest_location(trip_id) == offline
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
    assert offline is not None
    assert offline["stale"] is True
    last = watcher.locations()[-1]
    fields = ("lat", "lng", "ts")
    assert {k: offline[k] for k in fields} == {k: points[-1][k] for k in fields}
    assert {k: live[k] for k in fields} == {k: points[-1][k] for k in fields}
    assert offline["seq"] == live["seq"] == last.seq
    assert kept is not None
    assert {k: kept[k] for k in (*fields, "seq")} == {k: offline[k] for k in (*fields, "seq")}
