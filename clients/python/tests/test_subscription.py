"""The subscription against a real WebSocket server in this process that plays the tracking
server's side: a snapshot on connect, numbered events, ``since`` replayed from its history."""

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tripline_client.backoff import Backoff
from tripline_client.errors import InternalError, InvalidRequest, NotFound, Unauthorized
from tripline_client.frames import TripEvent
from tripline_client.lastknown import LastKnownStore
from tripline_client.storage import open_database
from tripline_client.subscription import TripSubscription

TRIP = "trip-1"
PATIENCE_S = 10.0
"""A bound on waiting for the server or the subscription, so a broken test fails, not hangs."""


class TripServer:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.kept_from = 1
        self.location: dict[str, Any] | None = None
        self.handshakes: list[int | None] = []
        self.close_codes: list[int | None] = []
        self.refusals: list[tuple[int, dict[str, str]]] = []
        self.refused = 0
        self.close_on_connect: list[int] = []
        self._outboxes: set[asyncio.Queue[tuple[str, Any]]] = set()
        self._server: Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, since: int | None) -> str:
        query = "" if since is None else f"&since={since}"
        return f"ws://127.0.0.1:{self.port}/ws/trips/{TRIP}?token=jwt{query}"

    @property
    def live(self) -> int:
        return len(self._outboxes)

    def publish(self, kind: str, *, send: bool = True, **fields: Any) -> int:
        """Number, keep and (unless ``send`` is false: a hole) send an event; its seq."""
        seq = len(self.events) + 1
        event = {"seq": seq, "type": kind, **fields}
        self.events.append(event)
        if kind == "location":
            self.location = {name: event[name] for name in ("lat", "lng", "ts", "seq")}
        if send:
            self._put("frame", json.dumps(event))
        return seq

    def send_raw(self, text: str) -> None:
        self._put("frame", text)

    def close_all(self, code: int, reason: str = "") -> None:
        self._put("close", (code, reason))

    def abort_all(self) -> None:
        self._put("abort", None)

    def _put(self, kind: str, value: Any) -> None:
        for outbox in self._outboxes:
            outbox.put_nowait((kind, value))

    def _start(self, since: int | None) -> list[str]:
        current = len(self.events)
        snapshot = {"type": "snapshot", "seq": current, "location": self.location}
        if since is None:
            return [json.dumps({**snapshot, "status": "accepted"})]
        if since + 1 < self.kept_from and since < current:
            return [json.dumps({**snapshot, "status": "accepted", "recovered": False})]
        return [json.dumps(event) for event in self.events[since:]]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.refusals:
            return None
        status, headers = self.refusals.pop(0)
        self.refused += 1
        problem = {
            "type": f"https://tripline.dev/problems/{'unauthorized' if status == 401 else 'x'}",
            "status": status,
            "detail": f"refused with {status}",
        }
        response = connection.respond(status, json.dumps(problem))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/problem+json"
        for name, value in headers.items():
            response.headers[name] = value
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        raw = parse_qs(urlsplit(ws.request.path).query).get("since")
        since = int(raw[0]) if raw else None
        self.handshakes.append(since)
        outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for frame in self._start(since):
            outbox.put_nowait(("frame", frame))
        if self.close_on_connect:
            outbox.put_nowait(("close", (self.close_on_connect.pop(0), "")))
        self._outboxes.add(outbox)
        sender = asyncio.create_task(self._send(ws, outbox))
        try:
            await ws.wait_closed()
        finally:
            self.close_codes.append(ws.close_code)
            self._outboxes.discard(outbox)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    @staticmethod
    async def _send(ws: ServerConnection, outbox: asyncio.Queue[tuple[str, Any]]) -> None:
        while True:
            kind, value = await outbox.get()
            if kind == "frame":
                await ws.send(value)
            elif kind == "close":
                await ws.close(*value)
                return
            else:
                ws.transport.abort()
                return


class Sleeps:
    """An injected sleep that records each wait and only yields."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def server() -> AsyncIterator[TripServer]:
    trip_server = TripServer()
    await trip_server.start()
    yield trip_server
    await trip_server.stop()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(tmp_path)
    yield connection
    connection.close()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def subscribe(
    server: TripServer, database: sqlite3.Connection, sleeps: Sleeps
) -> Callable[..., TripSubscription]:
    def make(**options: Any) -> TripSubscription:
        parts: dict[str, Any] = {
            "url": server.url,
            "store": LastKnownStore(database),
            "trip_id": TRIP,
            "backoff": Backoff(base_s=0.5, cap_s=15.0),
            "rand": lambda: 0.5,
            "sleep": sleeps,
        }
        return TripSubscription(**(parts | options))

    return make


async def next_event(subscription: TripSubscription) -> TripEvent:
    return await asyncio.wait_for(anext(subscription), PATIENCE_S)


async def events(subscription: TripSubscription, count: int) -> list[TripEvent]:
    return [await next_event(subscription) for _ in range(count)]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for what the loop does on its next turns; fail if it never happens."""
    deadline = asyncio.get_running_loop().time() + PATIENCE_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"never {what}")
        await asyncio.sleep(0.005)


def running_subscriptions() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("tripline-trip")]


def seqs(received: list[TripEvent]) -> list[int | None]:
    return [event.seq for event in received]


async def test_events_arrive_in_order_after_a_snapshot(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    server.publish("location", lat=52.5, lng=13.4, ts=100.0, trip_id=TRIP)
    server.publish("status", status="accepted")
    async with subscribe() as subscription:
        snapshot = await next_event(subscription)
        assert (snapshot.type, snapshot.seq) == ("snapshot", 2)
        assert snapshot.data["location"] == {"lat": 52.5, "lng": 13.4, "ts": 100.0, "seq": 1}
        server.publish("location", lat=52.6, lng=13.4, ts=101.0, trip_id=TRIP)
        server.publish("sos", message="help")
        server.publish("status", status="started")
        received = await events(subscription, 3)
        assert [(event.type, event.seq) for event in received] == [
            ("location", 3),
            ("sos", 4),
            ("status", 5),
        ]
        assert received[1].data == {"message": "help"}
        assert subscription.connected
        assert (subscription.last_seq, subscription.reconnects) == (5, 0)
    assert server.handshakes == [None]


@pytest.mark.parametrize(
    ("drop", "delays"),
    [
        (lambda server: server.close_all(1012, "service restart"), []),
        (lambda server: server.close_all(1013, "too slow"), [0.25]),
        (lambda server: server.close_all(4503, "draining"), [0.25]),
        (lambda server: server.close_all(1000), [0.25]),
        (TripServer.abort_all, [0.25]),
    ],
    ids=["1012", "1013", "4503", "1000", "abrupt"],
)
async def test_a_lost_connection_resumes_with_since_without_gap_or_repeat(
    server: TripServer,
    subscribe: Callable[..., TripSubscription],
    sleeps: Sleeps,
    drop: Callable[[TripServer], None],
    delays: list[float],
) -> None:
    async with subscribe() as subscription:
        assert seqs(await events(subscription, 1)) == [0]
        server.publish("status", status="accepted")
        server.publish("location", lat=1.0, lng=2.0, ts=3.0)
        assert seqs(await events(subscription, 2)) == [1, 2]
        drop(server)
        # Published while the socket goes down: replayed from the history after reconnecting.
        server.publish("status", status="started")
        server.publish("sos", message=None)
        assert seqs(await events(subscription, 2)) == [3, 4]
        server.publish("status", status="completed")
        assert seqs(await events(subscription, 1)) == [5]
        assert subscription.reconnects == 1
    assert server.handshakes == [None, 2]
    assert sleeps.delays == delays


async def test_a_refusal_after_the_upgrade_ends_the_subscription(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        server.close_all(4404, "no trip has that id")
        with pytest.raises(NotFound, match="no trip has that id"):
            await next_event(subscription)
        assert not subscription.connected
        with pytest.raises(StopAsyncIteration):
            await next_event(subscription)
    assert server.handshakes == [None]


async def test_a_refused_token_ends_the_subscription(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    server.refusals = [(401, {})]
    async with subscribe() as subscription:
        with pytest.raises(Unauthorized) as refused:
            await next_event(subscription)
    assert (refused.value.status, refused.value.detail) == (401, "refused with 401")
    assert (server.refused, server.handshakes) == (1, [])


async def test_a_busy_server_is_asked_again_no_sooner_than_its_retry_after(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    # 30 s is past the backoff's cap: a subscription waits it anyway rather than give up.
    server.refusals = [(503, {"Retry-After": "7"}), (429, {"Retry-After": "30"}), (503, {})]
    async with subscribe() as subscription:
        assert seqs(await events(subscription, 1)) == [0]
    assert sleeps.delays == [7.0, 30.0, 1.0]


async def test_the_backoff_starts_over_after_a_connection_that_lasted(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    server.refusals = [(503, {}), (502, {})]
    async with subscribe(stable_after_s=0) as subscription:
        await next_event(subscription)
        server.abort_all()
        server.publish("status", status="started")
        assert seqs(await events(subscription, 1)) == [1]
    assert sleeps.delays == [0.25, 0.5, 0.25]


async def test_connections_that_close_at_once_keep_the_backoff_growing(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        for number in (1, 2):
            server.abort_all()
            server.publish("status", status=f"moved-{number}")
            assert seqs(await events(subscription, 1)) == [number]
    assert sleeps.delays == [0.25, 0.5]


async def test_an_immediate_reconnection_that_fails_again_backs_off(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        server.close_on_connect = [1012, 1012]
        server.close_all(1012)
        await until(lambda: len(server.handshakes) == 4, "reconnected three times")
        server.publish("status", status="started")
        assert seqs(await events(subscription, 1)) == [1]
    assert server.handshakes == [None, 0, 0, 0]
    assert sleeps.delays == [0.5, 1.0]


async def test_an_unreachable_server_is_retried_with_growing_waits(
    subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    subscription = subscribe(url=lambda since: "ws://127.0.0.1:9/ws/trips/x?token=t")
    subscription.start()
    await until(lambda: len(sleeps.delays) >= 4, "retried four times")
    assert not subscription.connected
    assert subscription.last_known is None
    await subscription.aclose()
    assert sleeps.delays[:4] == [0.25, 0.5, 1.0, 2.0]
    assert running_subscriptions() == []


async def test_failures_of_an_injected_connect_are_retried(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    failures: list[Exception] = [OSError("network is unreachable"), TimeoutError()]
    uris: list[str] = []

    def flaky(uri: str, **options: Any) -> AbstractAsyncContextManager[ClientConnection]:
        uris.append(uri)
        if failures:
            raise failures.pop(0)
        return connect(uri, **options)

    async with subscribe(connect=flaky) as subscription:
        assert seqs(await events(subscription, 1)) == [0]
    assert uris == [server.url(None)] * 3
    assert sleeps.delays == [0.25, 0.5]


async def test_a_location_outlives_the_subscription_on_disk(
    server: TripServer, subscribe: Callable[..., TripSubscription], tmp_path: Path
) -> None:
    server.publish("location", lat=1.0, lng=2.0, ts=10.0, trip_id=TRIP)
    async with subscribe() as subscription:
        await next_event(subscription)
        assert subscription.last_known == {"lat": 1.0, "lng": 2.0, "ts": 10.0, "seq": 1}
        server.publish("location", lat=1.5, lng=2.5, ts=11.0, trip_id=TRIP)
        await next_event(subscription)
    later = open_database(tmp_path)
    try:
        assert LastKnownStore(later).get(TRIP) == {"lat": 1.5, "lng": 2.5, "ts": 11.0, "seq": 2}
        offline = subscribe(store=LastKnownStore(later))
        offline.pause()
        async with offline:
            assert not offline.connected
            assert offline.last_known == {"lat": 1.5, "lng": 2.5, "ts": 11.0, "seq": 2}
    finally:
        later.close()


async def test_pause_closes_the_socket_and_resume_catches_up(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        subscription.pause()
        assert not subscription.connected
        await until(lambda: server.live == 0, "closed")
        assert server.close_codes == [1000]
        server.publish("status", status="started")
        server.publish("location", lat=1.0, lng=2.0, ts=3.0)
        subscription.resume()
        assert seqs(await events(subscription, 2)) == [1, 2]
        assert subscription.connected
    assert server.handshakes == [None, 0]
    assert sleeps.delays == []


async def test_malformed_frames_and_replies_are_skipped(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        for text in ("not json", "[]", '{"seq": 1}', '{"type": "pong"}'):
            server.send_raw(text)
        server.publish("status", status="started")
        assert seqs(await events(subscription, 1)) == [1]
        assert subscription.malformed == 3
        assert subscription.connected


async def test_a_hole_in_the_numbers_is_filled_by_reconnecting(
    server: TripServer, subscribe: Callable[..., TripSubscription], sleeps: Sleeps
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        server.publish("location", send=False, lat=1.0, lng=2.0, ts=3.0)
        server.publish("status", status="started")
        received = await events(subscription, 2)
        assert [(event.type, event.seq) for event in received] == [("location", 1), ("status", 2)]
    assert server.handshakes == [None, 0]
    assert server.close_codes[0] == 1000
    assert sleeps.delays == []


async def test_a_hole_can_be_trusted_instead(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    async with subscribe(resync_on_gap=False) as subscription:
        await next_event(subscription)
        server.publish("location", send=False, lat=1.0, lng=2.0, ts=3.0)
        server.publish("status", status="started")
        assert seqs(await events(subscription, 1)) == [2]
    assert server.handshakes == [None]


async def test_lost_history_gives_a_snapshot_to_start_over_from(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    async with subscribe() as subscription:
        await next_event(subscription)
        server.abort_all()
        for _ in range(5):
            server.publish("location", lat=1.0, lng=2.0, ts=3.0)
        server.kept_from = 4
        snapshot = await next_event(subscription)
        assert (snapshot.type, snapshot.seq, snapshot.data["recovered"]) == ("snapshot", 5, False)
        server.publish("status", status="started")
        assert seqs(await events(subscription, 1)) == [6]


async def test_a_slow_reader_loses_superseded_locations_only(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    async with subscribe(capacity=2) as subscription:
        await until(lambda: subscription.last_seq == 0, "read the snapshot")
        for kind in ("location", "location", "status", "location", "location", "sos", "location"):
            server.publish(kind, lat=1.0, lng=2.0, ts=3.0)
        await until(lambda: subscription.last_seq == 7, "read every event")
        assert seqs(await events(subscription, 4)) == [0, 3, 6, 7]
        assert subscription.dropped == 4
        assert subscription.last_known is not None
        assert subscription.last_known["seq"] == 7


async def test_aclose_closes_normally_and_ends_the_iteration(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    closed: list[TripSubscription] = []
    subscription = subscribe(on_close=closed.append)
    received: list[TripEvent] = []

    async def consume() -> None:
        async for event in subscription:
            received.append(event)

    consumer = asyncio.create_task(consume())
    await until(lambda: len(received) == 1, "delivered the snapshot")
    await subscription.aclose()
    await asyncio.wait_for(consumer, PATIENCE_S)
    await subscription.aclose()
    await until(lambda: server.live == 0, "closed")
    assert server.close_codes == [1000]
    assert closed == [subscription]
    assert running_subscriptions() == []


async def test_a_cancelled_consumer_leaves_no_task_behind(
    server: TripServer, subscribe: Callable[..., TripSubscription]
) -> None:
    received: list[TripEvent] = []

    async def consume() -> None:
        async with subscribe() as subscription:
            async for event in subscription:
                received.append(event)

    consumer = asyncio.create_task(consume())
    await until(lambda: len(received) == 1, "delivered the snapshot")
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    assert running_subscriptions() == []
    await until(lambda: server.live == 0, "closed")
    assert server.close_codes == [1000]


async def test_a_defect_still_ends_the_iteration_with_a_tripline_error(
    subscribe: Callable[..., TripSubscription],
) -> None:
    def broken(since: int | None) -> str:
        raise RuntimeError("no token")

    async with subscribe(url=broken) as subscription:
        with pytest.raises(InternalError):
            await next_event(subscription)


async def test_a_url_that_is_not_a_websocket_url_is_final(
    subscribe: Callable[..., TripSubscription],
) -> None:
    async with subscribe(url=lambda since: "http://127.0.0.1:9/ws") as subscription:
        with pytest.raises(InvalidRequest):
            await next_event(subscription)
