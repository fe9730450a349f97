"""Payments end to end: core and the worker against the payment sandbox, real Redis and
SecantusDB. The provider fails, hangs and recovers; every payment ends confirmed, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tripline.common.auth import Role
from tripline.core.app import create_app
from tripline.core.settings import CoreSettings
from tripline.devstack.harness import Backends, scaled, scrape_metric, serve_app
from tripline.devstack.pytest_plugin import Providers
from tripline.devstack.testing import auth, eventually, fresh

pytestmark = pytest.mark.integration

TRIP = {"origin": {"lat": 48.85, "lng": 2.35}, "destination": {"lat": 48.86, "lng": 2.36}}
ORDER = {"amount_cents": 1850, "currency": "EUR", "method": "card"}
BREAKER_FAILURES = 3
BREAKER_RESET_S = scaled(1.5)


@pytest.fixture
async def sandbox(providers: Providers) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=providers.sandbox_url, timeout=scaled(10)) as client:
        yield client
        await client.put("/control/payments", json={"mode": "ok"})


@pytest.fixture
async def core(
    providers: Providers, settings_for: Callable[..., Any]
) -> AsyncIterator[httpx.AsyncClient]:
    settings: CoreSettings = settings_for(
        CoreSettings,
        instance_id=fresh("core"),
        mongo_db=providers.database,
        payment_sandbox_url=providers.sandbox_url,
        payment_timeout_s=scaled(0.5),
        payment_breaker_failures=BREAKER_FAILURES,
        payment_breaker_reset_s=BREAKER_RESET_S,
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(10)) as client,
    ):
        yield client


@pytest.fixture
async def payment_records(backends: Backends, providers: Providers) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backends.urls.mongo_url)
    yield client[providers.database]["payments"]
    await client.close()


async def request_trip(core: httpx.AsyncClient, rider: str) -> str:
    answer = await core.post("/api/trips", json=TRIP, headers=auth(rider, Role.RIDER))
    assert answer.status_code == 201, answer.text
    trip_id: str = answer.json()["id"]
    return trip_id


async def pay(
    core: httpx.AsyncClient, trip_id: str, rider: str, order: dict[str, Any] = ORDER
) -> httpx.Response:
    return await core.post(
        f"/api/trips/{trip_id}/payment", json=order, headers=auth(rider, Role.RIDER)
    )


async def drive_to_completion(core: httpx.AsyncClient, trip_id: str, driver: str) -> None:
    for status in ("accepted", "arrived", "in_progress", "completed"):
        answer = await core.post(
            f"/api/trips/{trip_id}/status",
            json={"status": status},
            headers=auth(driver, Role.DRIVER),
        )
        assert answer.status_code == 200, answer.text


async def all_confirmed(records: Any, payment_ids: list[str]) -> list[dict[str, Any]]:
    async def confirmed() -> list[dict[str, Any]] | None:
        found = await records.find({"_id": {"$in": payment_ids}, "status": "confirmed"}).to_list()
        return found if len(found) == len(payment_ids) else None

    found: list[dict[str, Any]] = await eventually(confirmed, timeout_s=30)
    return found


async def charged_once(sandbox: httpx.AsyncClient, records: list[dict[str, Any]]) -> None:
    """Each record names its own provider charge, for its own amount and reference."""
    assert len({record["provider_payment_id"] for record in records}) == len(records)
    for record in records:
        charge = (await sandbox.get(f"/v1/payments/{record['provider_payment_id']}")).json()
        assert (charge["reference"], charge["amount_cents"]) == (record["_id"], 1850)


async def test_a_rider_pays_once_and_a_replay_answers_the_same(
    core: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    rider = fresh("rider")
    trip_id = await request_trip(core, rider)
    first = await pay(core, trip_id, rider)
    assert first.status_code == 200, first.text
    payment = first.json()
    assert (payment["status"], payment["trip_id"], payment["amount_cents"]) == (
        "confirmed",
        trip_id,
        1850,
    )
    again = await pay(core, trip_id, rider)
    assert again.status_code == 200
    assert again.json() == payment
    charge = (await sandbox.get(f"/v1/payments/{payment['provider_payment_id']}")).json()
    assert charge["reference"] == payment["payment_id"]
    other_amount = await pay(core, trip_id, rider, {**ORDER, "amount_cents": 900})
    assert other_amount.status_code == 409
    assert other_amount.headers["content-type"] == "application/problem+json"


async def test_only_the_trips_rider_pays_for_a_live_trip_with_a_valid_order(
    core: httpx.AsyncClient,
) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trip_id = await request_trip(core, rider)
    accepted = await core.post(
        f"/api/trips/{trip_id}/status",
        json={"status": "accepted"},
        headers=auth(driver, Role.DRIVER),
    )
    assert accepted.status_code == 200
    by_driver = await core.post(
        f"/api/trips/{trip_id}/payment", json=ORDER, headers=auth(driver, Role.DRIVER)
    )
    by_stranger = await pay(core, trip_id, fresh("rider"))
    unknown_trip = await pay(core, fresh("trip"), rider)
    assert (by_driver.status_code, by_stranger.status_code, unknown_trip.status_code) == (
        404,
        404,
        404,
    )
    for bad in (
        {**ORDER, "amount_cents": 0},
        {**ORDER, "amount_cents": "12"},
        {**ORDER, "currency": "eur"},
        {**ORDER, "method": "gold"},
        {"amount_cents": 100},
        {**ORDER, "extra": 1},
    ):
        answer = await pay(core, trip_id, rider, bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    cancelled_trip = await request_trip(core, rider)
    cancel = await core.post(
        f"/api/trips/{cancelled_trip}/status",
        json={"status": "cancelled"},
        headers=auth(rider, Role.RIDER),
    )
    assert cancel.status_code == 200
    assert (await pay(core, cancelled_trip, rider)).status_code == 409


async def test_a_failing_provider_opens_the_breaker_trips_proceed_and_payments_confirm_later(
    core: httpx.AsyncClient, sandbox: httpx.AsyncClient, payment_records: Any
) -> None:
    rider, driver = fresh("rider"), fresh("driver")
    trips = [await request_trip(core, rider) for _ in range(BREAKER_FAILURES + 2)]
    assert (await sandbox.put("/control/payments", json={"mode": "fail"})).status_code == 200

    pending = []
    for trip_id in trips[:-1]:
        answer = await pay(core, trip_id, rider)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "pending"
        pending.append(answer.json()["payment_id"])
    assert await scrape_metric(core, "core_breaker_state", breaker="payments") == 2
    assert await scrape_metric(core, "core_payments_total", outcome="pending") == len(pending)

    # The trip does not wait for its payment.
    await drive_to_completion(core, trips[0], driver)
    waiting = await payment_records.count_documents({"_id": {"$in": pending}, "status": "pending"})
    assert waiting == len(pending)

    await sandbox.put("/control/payments", json={"mode": "ok"})
    records = await all_confirmed(payment_records, pending)
    await charged_once(sandbox, records)

    # Once the reset time has passed, the next payment is the half-open probe; it closes.
    await asyncio.sleep(BREAKER_RESET_S)
    probe = await pay(core, trips[-1], rider)
    assert probe.status_code == 200, probe.text
    assert probe.json()["status"] == "confirmed"
    assert await scrape_metric(core, "core_breaker_state", breaker="payments") == 0


async def test_a_hung_provider_leaves_the_payment_pending_until_the_worker_confirms_it(
    core: httpx.AsyncClient, sandbox: httpx.AsyncClient, payment_records: Any
) -> None:
    rider = fresh("rider")
    trip_id = await request_trip(core, rider)
    await sandbox.put("/control/payments", json={"mode": "hang"})
    answer = await pay(core, trip_id, rider)
    assert answer.status_code == 202, answer.text
    payment_id = answer.json()["payment_id"]
    await sandbox.put("/control/payments", json={"mode": "ok"})
    records = await all_confirmed(payment_records, [payment_id])
    await charged_once(sandbox, records)
    replay = await pay(core, trip_id, rider)
    assert replay.json()["provider_payment_id"] == records[0]["provider_payment_id"]
