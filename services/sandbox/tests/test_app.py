from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tripline.common.health import Health
from tripline.sandbox.app import create_app, release_when_draining
from tripline.sandbox.behaviour import Mode, ProviderUnavailable
from tripline.sandbox.settings import SandboxSettings
from tripline.sandbox.state import SandboxState

PAYMENT: dict[str, Any] = {
    "amount_cents": 1250,
    "currency": "EUR",
    "method": "card",
    "reference": "trip-1",
}
NOTIFICATION: dict[str, Any] = {"to": "rider-1", "channel": "push", "message": "Driver arriving"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SandboxSettings(max_records=100, max_hang_s=10))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
        ) as client,
    ):
        yield client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].endswith(f"/{slug}")
    return body


async def set_mode(client: httpx.AsyncClient, provider: str, **body: Any) -> dict[str, Any]:
    response = await client.put(f"/control/{provider}", json=body)
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def wait_until_hanging(client: httpx.AsyncClient, provider: str) -> None:
    for _ in range(500):
        if (await client.get("/control")).json()[provider]["hanging"] >= 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {provider} request was held")


async def test_health_is_ready_without_probes(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")

    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {}}
    assert ready.headers["tripline-instance"].startswith("sandbox/")


async def test_a_payment_is_confirmed_and_can_be_read_back(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/payments", json=PAYMENT)

    assert created.status_code == 200
    payment = created.json()
    assert payment["id"].startswith("pay_")
    assert payment["status"] == "confirmed"
    assert {key: payment[key] for key in PAYMENT} == PAYMENT
    assert "idempotent-replayed" not in created.headers

    fetched = await client.get(f"/v1/payments/{payment['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == payment


async def test_an_unknown_payment_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/payments/pay_missing")

    assert_problem(response, 404, "not-found")


async def test_the_same_idempotency_key_replays_the_same_payment(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "trip-1-charge"}

    first = await client.post("/v1/payments", json=PAYMENT, headers=headers)
    again = await client.post("/v1/payments", json=PAYMENT, headers=headers)
    other = await client.post("/v1/payments", json=PAYMENT, headers={"Idempotency-Key": "x"})

    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.json()["id"] != first.json()["id"]


async def test_reusing_a_key_with_another_body_is_a_409_problem(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "trip-1-charge"}
    await client.post("/v1/payments", json=PAYMENT, headers=headers)

    response = await client.post(
        "/v1/payments", json={**PAYMENT, "amount_cents": 999}, headers=headers
    )

    assert_problem(response, 409, "idempotency-key-reused")


@pytest.mark.parametrize(
    "body",
    [
        {**PAYMENT, "amount_cents": 0},
        {**PAYMENT, "amount_cents": "12"},
        {**PAYMENT, "currency": "eur"},
        {key: value for key, value in PAYMENT.items() if key != "reference"},
        [PAYMENT],
        "pay me",
    ],
)
async def test_a_bad_payment_is_a_422_problem(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/v1/payments", json=body)

    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"]


async def test_a_bad_idempotency_key_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/payments", json=PAYMENT, headers={"Idempotency-Key": "k" * 300}
    )

    assert_problem(response, 422, "validation-error")


async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/payments", content=b'{"amount_cents": 1', headers={"content-type": "application/json"}
    )

    assert_problem(response, 400, "malformed-request")


async def test_an_empty_body_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/notifications")

    assert_problem(response, 400, "malformed-request")


async def test_fail_mode_answers_503_problems(client: httpx.AsyncClient) -> None:
    state = await set_mode(client, "payments", mode="fail")
    assert state["mode"] == "fail"

    response = await client.post("/v1/payments", json=PAYMENT)

    problem = assert_problem(response, 503, "provider-unavailable")
    assert problem["provider"] == "payments"
    assert response.headers["retry-after"] == "1"
    notifications = await client.post("/v1/notifications", json=NOTIFICATION)
    assert notifications.status_code == 202
    counters = (await client.get("/control")).json()["payments"]
    assert (counters["received"], counters["succeeded"], counters["failed"]) == (1, 0, 1)


async def test_fail_mode_with_a_ratio_fails_that_share_of_calls(
    client: httpx.AsyncClient,
) -> None:
    state = await set_mode(client, "notifications", mode="fail", fail_ratio=0.5)
    assert state["fail_ratio"] == 0.5

    answers = [
        (await client.post("/v1/notifications", json={**NOTIFICATION, "message": str(n)}))
        for n in range(6)
    ]

    assert [answer.status_code for answer in answers] == [202, 503] * 3
    assert len((await client.get("/v1/notifications")).json()["items"]) == 3


async def test_payments_are_listed_by_reference_once_per_charge(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "trip-1:1"}
    first = (await client.post("/v1/payments", json=PAYMENT, headers=headers)).json()
    await client.post("/v1/payments", json=PAYMENT, headers=headers)
    other = {**PAYMENT, "reference": "trip-2"}
    second = (await client.post("/v1/payments", json=other)).json()
    await set_mode(client, "payments", mode="hang")

    listed = await client.get("/v1/payments", params={"reference": "trip-1"})
    everything = await client.get("/v1/payments")

    assert listed.status_code == 200
    assert listed.json() == {"items": [first]}
    assert [item["id"] for item in everything.json()["items"]] == [first["id"], second["id"]]
    assert_problem(
        await client.get("/v1/payments", params={"reference": ""}), 422, "validation-error"
    )


async def test_slow_mode_answers_after_the_delay(client: httpx.AsyncClient) -> None:
    await set_mode(client, "payments", mode="slow", delay_s=0.2)

    started = time.monotonic()
    slow = asyncio.create_task(client.post("/v1/payments", json=PAYMENT))
    fast = await client.post("/v1/notifications", json=NOTIFICATION)
    assert fast.status_code == 202
    assert not slow.done()

    response = await asyncio.wait_for(slow, 5)
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"
    assert time.monotonic() - started >= 0.15


async def test_hang_mode_holds_requests_until_set_back_to_ok(client: httpx.AsyncClient) -> None:
    await set_mode(client, "payments", mode="hang")
    held = asyncio.create_task(
        client.post("/v1/payments", json=PAYMENT, headers={"Idempotency-Key": "k"})
    )
    await wait_until_hanging(client, "payments")
    assert not held.done()

    await set_mode(client, "payments", mode="ok")

    response = await asyncio.wait_for(held, 5)
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"
    assert (await client.get("/control")).json()["payments"]["hanging"] == 0


async def test_draining_releases_held_requests_with_503() -> None:
    app = create_app(SandboxSettings(max_hang_s=10))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client,
    ):
        await set_mode(client, "payments", mode="hang")
        held = asyncio.create_task(client.post("/v1/payments", json=PAYMENT))
        await wait_until_hanging(client, "payments")

        app.state.health.start_draining()

        response = await asyncio.wait_for(held, 5)
        assert_problem(response, 503, "provider-unavailable")
        later = await client.post("/v1/payments", json=PAYMENT)
        assert_problem(later, 503, "provider-unavailable")


async def test_release_when_draining_closes_the_state_once_draining() -> None:
    health = Health()
    state = SandboxState(max_records=10, max_hang_s=10)
    state.payments.configure(Mode.HANG)
    watcher = asyncio.create_task(release_when_draining(health, state))
    await asyncio.sleep(0.05)
    assert not watcher.done()

    health.start_draining()
    await asyncio.wait_for(watcher, 2)

    with pytest.raises(ProviderUnavailable, match="stopping"):
        async with state.payments.call():
            pass


async def test_notifications_are_accepted_and_listed_newest_last(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/v1/notifications", json={**NOTIFICATION, "message": "one"})
    await client.post("/v1/notifications", json={**NOTIFICATION, "to": "driver-7"})
    await client.post(
        "/v1/notifications", json={**NOTIFICATION, "message": "two", "reference": "trip-1"}
    )

    assert first.status_code == 202
    assert first.json() == {"id": first.json()["id"], "status": "accepted"}
    listed = await client.get("/v1/notifications", params={"to": "rider-1"})
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["message"] for item in items] == ["one", "two"]
    assert items[0]["id"] == first.json()["id"]
    assert items[1]["reference"] == "trip-1"
    everything = (await client.get("/v1/notifications")).json()["items"]
    assert len(everything) == 3


async def test_notifications_are_deduplicated_by_key(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "arrival-trip-1"}

    first = await client.post("/v1/notifications", json=NOTIFICATION, headers=headers)
    again = await client.post("/v1/notifications", json=NOTIFICATION, headers=headers)
    clash = await client.post(
        "/v1/notifications", json={**NOTIFICATION, "channel": "sms"}, headers=headers
    )

    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert_problem(clash, 409, "idempotency-key-reused")
    assert len((await client.get("/v1/notifications")).json()["items"]) == 1


async def test_a_bad_notification_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/notifications", json={**NOTIFICATION, "channel": "pigeon", "message": ""}
    )

    problem = assert_problem(response, 422, "validation-error")
    assert {error["loc"] for error in problem["errors"]} == {"channel", "message"}


async def test_an_empty_recipient_filter_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/notifications", params={"to": ""})

    assert_problem(response, 422, "validation-error")


async def test_control_shows_both_providers(client: httpx.AsyncClient) -> None:
    response = await client.get("/control")

    assert response.status_code == 200
    state = response.json()
    assert set(state) == {"payments", "notifications"}
    assert state["notifications"] == {
        "mode": "ok",
        "delay_s": 0.0,
        "fail_ratio": 1.0,
        "received": 0,
        "succeeded": 0,
        "failed": 0,
        "hanging": 0,
    }


async def test_an_unknown_provider_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.put("/control/maps", json={"mode": "fail"})

    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    "body", [{"mode": "broken"}, {"mode": "slow", "delay_s": 301}, {"delay_s": 1}]
)
async def test_a_bad_mode_change_is_a_422_problem(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.put("/control/payments", json=body)

    assert_problem(response, 422, "validation-error")


async def test_reset_restores_ok_and_forgets_everything(client: httpx.AsyncClient) -> None:
    payment = (await client.post("/v1/payments", json=PAYMENT)).json()
    await client.post("/v1/notifications", json=NOTIFICATION)
    await set_mode(client, "payments", mode="fail")
    await set_mode(client, "notifications", mode="slow", delay_s=3)

    response = await client.post("/control/reset")

    assert response.status_code == 200
    state = response.json()
    for provider in ("payments", "notifications"):
        assert state[provider]["mode"] == "ok"
        assert state[provider]["received"] == 0
    assert (await client.get("/v1/notifications")).json() == {"items": []}
    assert_problem(await client.get(f"/v1/payments/{payment['id']}"), 404, "not-found")


async def test_unknown_paths_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v2/payments"), 404, "not-found")
    assert_problem(await client.delete("/v1/payments"), 405, "method-not-allowed")
