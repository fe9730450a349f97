"""The facade's promises on an in-memory gateway (httpx's mock transport, no sockets): what a
critical action's call returns online, offline and on refusal, and that queued actions outlive
the client. The same promises on the real platform: tests/integration/test_client_sdk.py."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tripline_client.client import Tripline
from tripline_client.config import ClientConfig
from tripline_client.errors import (
    ClientClosed,
    Conflict,
    NetworkError,
    TriplineError,
    UnexpectedResponse,
    ValidationError,
)
from tripline_client.outbox_store import Outcome


def fixed_clock() -> float:
    return 1_700_000_000.0


class FakeGateway:
    """Applies each Idempotency-Key once, like the platform; can be switched off."""

    def __init__(self) -> None:
        self.up = True
        self.applied: list[tuple[str, str]] = []
        self.keys: dict[str, dict[str, Any]] = {}
        self.location: dict[str, Any] | None = None
        self.refusing = False
        self.writes_seen = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("no route to host")
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if path.endswith("/location") and request.method == "GET":
            if self.location is None:
                return problem(404, "not-found")
            return httpx.Response(200, json=self.location)
        self.writes_seen += 1
        if self.refusing:
            return problem(503, "overloaded", {"retry-after": "1"})
        if "closed-trip" in path:
            return problem(409, "conflict")
        key = request.headers["idempotency-key"]
        if key not in self.keys:
            self.applied.append((path, key))
            self.keys[key] = {"id": f"r{len(self.applied)}", "path": path}
        return httpx.Response(202, json=self.keys[key])


def problem(status: int, slug: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"type": f"https://tripline.dev/problems/{slug}", "status": status, "title": slug}
    return httpx.Response(status, json=body, headers=headers)


async def quick_sleep(delay: float) -> None:
    await asyncio.sleep(min(delay, 0.01))


def client(gateway: FakeGateway, data_dir: Path) -> Tripline:
    return Tripline(
        "http://gateway.test",
        "token",
        data_dir,
        config=ClientConfig(max_retries=1, action_wait_s=5, timeout_s=1),
        sleep=quick_sleep,
        rand=lambda: 0.5,
        clock=fixed_clock,
        http=httpx.AsyncClient(
            base_url="http://gateway.test", transport=httpx.MockTransport(gateway.handle)
        ),
    )


async def test_an_action_sent_online_is_applied_at_once(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with client(gateway, tmp_path) as tripline:
        delivery = await tripline.send_sos("t1", lat=52.5, lng=13.4)
        assert delivery.state == "applied"
        assert delivery.message == "Your SOS was sent."
        assert delivery.result == {"id": "r1", "path": "/api/trips/t1/sos"}
        assert tripline.pending_actions() == []
    assert gateway.applied == [("/api/trips/t1/sos", delivery.action_id)]


async def test_offline_actions_queue_with_a_human_message_then_go_in_order(
    tmp_path: Path,
) -> None:
    gateway = FakeGateway()
    gateway.up = False
    async with client(gateway, tmp_path) as tripline:
        sos = await tripline.send_sos("t1", lat=52.5, lng=13.4, message="help")
        status = await tripline.change_status("t1", "arrived")
        assert (sos.state, status.state) == ("queued", "queued")
        assert sos.message == "No connection. Your SOS will be sent as soon as you are back online."
        assert [action.id for action in tripline.pending_actions()] == [
            sos.action_id,
            status.action_id,
        ]
        gateway.up = True
        tripline.report_network(True)
        outcomes = await asyncio.wait_for(asyncio.gather(sos.outcome(), status.outcome()), 10)
    assert all(outcome.applied for outcome in outcomes)
    assert [key for _, key in gateway.applied] == [sos.action_id, status.action_id]


async def test_a_refused_action_fails_with_the_reason_and_does_not_block_the_next(
    tmp_path: Path,
) -> None:
    gateway = FakeGateway()
    async with client(gateway, tmp_path) as tripline:
        refused = await tripline.change_status("closed-trip", "arrived")
        assert refused.state == "failed"
        assert isinstance(refused.error, Conflict)
        assert refused.message == Conflict.default_message
        assert (await tripline.change_status("t1", "arrived")).state == "applied"
        with pytest.raises(ValidationError):
            await tripline.change_status("t1", "teleported")
    assert len(gateway.applied) == 1


async def test_actions_left_by_a_closed_client_are_sent_by_the_next_one(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.up = False
    async with client(gateway, tmp_path) as first:
        queued = await first.send_locations("t1", [{"lat": 52.5, "lng": 13.4, "ts": 1.7e9}])
        assert queued.state == "queued"
    gateway.up = True
    heard: list[Outcome] = []
    second = client(gateway, tmp_path)
    second.on_outcome(heard.append)
    async with second:
        for _ in range(500):
            if heard:
                break
            await asyncio.sleep(0.01)
    assert [outcome.action.id for outcome in heard] == [queued.action_id]
    assert heard[0].applied
    assert [key for _, key in gateway.applied] == [queued.action_id]


async def test_the_last_location_seen_is_served_while_offline(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.location = {"lat": 52.5, "lng": 13.4, "ts": 1.7e9, "seq": 4}
    async with client(gateway, tmp_path) as tripline:
        assert await tripline.latest_location("t1") == gateway.location
        gateway.up = False
        for _ in range(5):  # also once failures have used up the retry budget
            assert await tripline.latest_location("t1") == {**gateway.location, "stale": True}
        with pytest.raises(TriplineError) as raised:
            await tripline.latest_location("never-seen")
        assert raised.value.transient
        assert raised.value.user_message == NetworkError.default_message


async def test_background_mode_pauses_only_non_critical_subscriptions(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with client(gateway, tmp_path) as tripline:
        ordinary = tripline.subscribe("t1")
        critical = tripline.subscribe("t2", critical=True)
        tripline.set_background(True)
        assert ordinary.paused
        assert not critical.paused
        tripline.set_background(False)
        assert not ordinary.paused


async def test_an_action_made_while_a_backlog_drains_waits_for_its_answer(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.up = False
    async with client(gateway, tmp_path) as tripline:
        backlog = [await tripline.change_status("t1", "arrived") for _ in range(5)]
        assert {delivery.state for delivery in backlog} == {"queued"}
        gateway.up = True
        tripline.report_network(True)
        await asyncio.wait_for(tripline.connectivity.wait_online(), 5)
        latest = await tripline.send_sos("t1", lat=1, lng=2)
        assert latest.state == "applied"
    assert [key for _, key in gateway.applied][-1] == latest.action_id


async def test_actions_made_while_the_platform_refuses_wait_for_the_backoff(
    tmp_path: Path,
) -> None:
    gateway = FakeGateway()
    gateway.refusing = True
    async with client(gateway, tmp_path) as tripline:
        first = await tripline.send_sos("t1", lat=1, lng=2)
        assert first.state == "queued"
        seen = gateway.writes_seen
        later = [
            await tripline.send_locations("t1", [{"lat": 1, "lng": 2, "ts": n}]) for n in (1, 2)
        ]
        assert {delivery.state for delivery in later} == {"queued"}
        assert gateway.writes_seen <= seen + 2  # at most the backoff's own attempt, not one each
        gateway.refusing = False
        outcomes = await asyncio.wait_for(
            asyncio.gather(first.outcome(), *(delivery.outcome() for delivery in later)), 10
        )
    assert all(outcome.applied for outcome in outcomes)
    assert [key for _, key in gateway.applied] == [first.action_id] + [d.action_id for d in later]


async def test_an_outcome_awaited_past_close_says_the_client_closed(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.up = False
    async with client(gateway, tmp_path) as tripline:
        queued = await tripline.send_sos("t1", lat=1, lng=2)
        waiting = asyncio.create_task(queued.outcome())
        await asyncio.sleep(0)
    with pytest.raises(ClientClosed):
        await asyncio.wait_for(waiting, 5)
    assert queued.state == "queued"
    assert queued.result is None


async def test_outcomes_can_be_read_by_id_after_a_restart(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with client(gateway, tmp_path) as tripline:
        applied = await tripline.send_sos("t1", lat=1, lng=2)
    async with client(gateway, tmp_path) as again:
        outcome = again.outcome(applied.action_id)
        assert outcome is not None
        assert outcome.applied
        assert again.outcome("unknown") is None


@pytest.mark.parametrize(
    "presign",
    [
        {},
        {"url": "http://s3.test/b", "fields": None},
        {"url": 3, "fields": {}},
        {"url": "http://s3.test/b", "fields": {"key": ["nested"]}},
    ],
)
async def test_a_malformed_presign_is_an_unexpected_response(
    tmp_path: Path, presign: dict[str, Any]
) -> None:
    async with client(FakeGateway(), tmp_path) as tripline:
        with pytest.raises(UnexpectedResponse):
            await tripline.upload_bytes(presign, b"data")


async def test_a_token_read_from_a_file_is_sent_without_its_line_break(tmp_path: Path) -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"id": "u1"})

    tripline = Tripline(
        "http://gateway.test",
        lambda: "abc.def.ghi\n",
        tmp_path,
        http=httpx.AsyncClient(
            base_url="http://gateway.test", transport=httpx.MockTransport(handle)
        ),
    )
    async with tripline:
        await tripline.me()
    assert seen == ["Bearer abc.def.ghi"]


async def test_a_sign_in_page_does_not_count_as_being_back_online(tmp_path: Path) -> None:
    portal = True

    def handle(request: httpx.Request) -> httpx.Response:
        if portal:
            return httpx.Response(302, headers={"location": "http://wifi.login/"})
        return httpx.Response(200, json={"status": "ok", "id": "x"})

    tripline = Tripline(
        "http://gateway.test",
        "token",
        tmp_path,
        sleep=quick_sleep,
        http=httpx.AsyncClient(
            base_url="http://gateway.test", transport=httpx.MockTransport(handle)
        ),
    )
    async with tripline:
        queued = await tripline.send_sos("t1", lat=1, lng=2)
        assert queued.state == "queued"
        assert not tripline.connectivity.online
        for _ in range(5):
            tripline.report_network(True)
            await asyncio.sleep(0.02)
        assert not tripline.connectivity.online
        assert tripline.pending_actions() != []
        portal = False
        tripline.report_network(True)
        outcome = await asyncio.wait_for(queued.outcome(), 10)
    assert outcome.applied


async def test_an_sos_cuts_the_queues_backoff_short(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.refusing = True
    async with client(gateway, tmp_path) as tripline:
        assert (await tripline.change_status("t1", "arrived")).state == "queued"
        seen = gateway.writes_seen
        sos = await tripline.send_sos("t1", lat=1, lng=2)
        assert sos.state == "queued"
        assert gateway.writes_seen > seen
