from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.common.errors import CircuitOpen, UpstreamTimeout, UpstreamUnavailable
from tripline.common.retries import Backoff, RetryBudget
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.gateway.h1client import ConnectFailed, H1Pool
from tripline.gateway.proxy import (
    HOP_BY_HOP,
    Forwarder,
    UpstreamRequest,
    connection_listed,
    forward_headers,
    request_target,
    response_headers,
)


def names(headers: Sequence[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in headers]


def value(headers: Sequence[tuple[str, str]], name: str) -> str:
    found = [v for n, v in headers if n.lower() == name]
    assert len(found) == 1, (name, headers)
    return found[0]


def forwarded(
    headers: list[tuple[str, str]], client_host: str | None = "10.0.0.9"
) -> list[tuple[str, str]]:
    """forward_headers on text headers (latin-1 both ways, as the bytes would be)."""
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    out = forward_headers(raw, client_host=client_host, scheme="https", host=b"gw.example")
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in out]


# forward_headers


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_hop_by_hop_headers_are_dropped(name: str) -> None:
    out = forwarded([(name.title(), "x"), ("Accept", "application/json")])
    assert name not in names(out)
    assert ("Accept", "application/json") in out


def test_contract_hop_by_hop_headers_are_all_listed() -> None:
    assert {"connection", "transfer-encoding", "host", "content-length", "upgrade"} <= HOP_BY_HOP


def test_end_to_end_headers_are_kept_in_order() -> None:
    client = [("Authorization", "Bearer t"), ("Cookie", "a=1"), ("Cookie", "b=2"), ("X-A", "1")]
    out = forwarded(client)
    assert out[: len(client)] == client


@pytest.mark.parametrize(
    ("previous", "client_host", "expected"),
    [
        ([], "10.0.0.9", "10.0.0.9"),
        ([("X-Forwarded-For", "1.1.1.1, 2.2.2.2")], "10.0.0.9", "1.1.1.1, 2.2.2.2, 10.0.0.9"),
        ([("x-forwarded-for", "1.1.1.1")], None, "1.1.1.1"),
        ([], None, None),
    ],
)
def test_the_client_host_is_appended_to_x_forwarded_for(
    previous: list[tuple[str, str]], client_host: str | None, expected: str | None
) -> None:
    out = forwarded(previous, client_host=client_host)
    if expected is None:
        assert "x-forwarded-for" not in names(out)
    else:
        assert value(out, "x-forwarded-for") == expected


def test_repeated_x_forwarded_for_lines_are_all_kept() -> None:
    out = forwarded([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", " 2.2.2.2 ")])
    assert value(out, "x-forwarded-for") == "1.1.1.1, 2.2.2.2, 10.0.0.9"


def test_fields_named_by_connection_are_dropped() -> None:
    out = forwarded([("Connection", "close, X-Hop-Secret"), ("X-Hop-Secret", "1"), ("X-B", "2")])
    assert "x-hop-secret" not in names(out)
    assert ("X-B", "2") in out


def test_connection_listed_reads_every_line_case_insensitively() -> None:
    headers = [("Connection", " Keep-Alive ,X-A,, "), ("connection", "x-b"), ("X-C", "x-c")]
    raw = [(name.encode(), value.encode()) for name, value in headers]
    assert connection_listed(raw) == {b"keep-alive", b"x-a", b"x-b"}
    assert connection_listed([(b"Accept", b"x")]) == frozenset()


def test_forwarded_proto_and_host_are_set() -> None:
    out = forwarded([("Accept", "*/*")])
    assert value(out, "x-forwarded-proto") == "https"
    assert value(out, "x-forwarded-host") == "gw.example"


def test_client_supplied_forwarded_proto_and_host_are_replaced() -> None:
    out = forwarded([("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "evil.example")])
    assert value(out, "x-forwarded-proto") == "https"
    assert value(out, "x-forwarded-host") == "gw.example"


def test_a_client_request_id_is_kept_and_a_fresh_one_generated_when_absent() -> None:
    assert value(forwarded([("X-Request-Id", "req-123")]), "x-request-id") == "req-123"
    first, second = (value(forwarded([]), "x-request-id") for _ in range(2))
    assert len(first) == 32
    assert int(first, 16) >= 0
    assert first != second


# response_headers


def test_response_headers_keep_repeated_set_cookie_and_content_length() -> None:
    upstream = [(b"Set-Cookie", b"a=1; Path=/"), (b"Set-Cookie", b"b=2; Path=/")]
    upstream += [(b"Content-Length", b"12"), (b"Content-Type", b"application/json")]
    upstream += [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"keep-alive")]
    upstream += [(b"Keep-Alive", b"timeout=5"), (b"X-Custom", b"yes")]
    assert response_headers(upstream) == [
        (b"set-cookie", b"a=1; Path=/"),
        (b"set-cookie", b"b=2; Path=/"),
        (b"content-length", b"12"),
        (b"content-type", b"application/json"),
        (b"x-custom", b"yes"),
    ]


def test_the_gateway_sets_date_and_server_itself() -> None:
    upstream = [(b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"server", b"uvicorn")]
    assert response_headers([*upstream, (b"ETag", b'"1"')]) == [(b"etag", b'"1"')]


def test_response_header_values_are_relayed_as_bytes() -> None:
    raw = "attachment; filename=Zürich.pdf".encode()
    assert response_headers([(b"Content-Disposition", raw)]) == [(b"content-disposition", raw)]


def test_response_fields_named_by_connection_are_dropped() -> None:
    upstream = [(b"Connection", b"X-Upstream-Hop"), (b"X-Upstream-Hop", b"1"), (b"X-B", b"2")]
    assert response_headers(upstream) == [(b"x-b", b"2")]


# request_target


@pytest.mark.parametrize(
    ("scope", "target"),
    [
        ({"path": "/api/trips/a/b", "raw_path": b"/api/trips/a%2Fb"}, "/api/trips/a%2Fb"),
        (
            {"path": "/api/trips/a/b", "raw_path": b"/api/trips/a%2Fb", "query_string": b"x=1"},
            "/api/trips/a%2Fb?x=1",
        ),
        (
            {"path": "/api/trips/1", "raw_path": b"/api/trips/1", "query_string": b""},
            "/api/trips/1",
        ),
        (
            {"path": "/api/trips/1", "raw_path": None, "query_string": b"q=%20"},
            "/api/trips/1?q=%20",
        ),
        ({"path": "/api/trips/1"}, "/api/trips/1"),
    ],
)
def test_request_target_is_the_path_and_query_as_sent(scope: dict[str, Any], target: str) -> None:
    assert request_target(scope) == target


# Forwarder against real upstream servers.

BIG = bytes(range(256)) * (5 * 1024 + 7)  # a little over 1.25 MiB, no two neighbours alike
ANSWER_BODY = b'{"id":"t-1"}'
ANSWER_HEADERS = [
    (b"content-length", str(len(ANSWER_BODY)).encode()),
    (b"content-type", b"application/json"),
    (b"set-cookie", b"a=1; Path=/"),
    (b"set-cookie", b"b=2; Path=/"),
    (b"location", b"/api/trips/t-1"),
    (b"X-Custom", "Zürich".encode()),
]
RELAYED_ANSWER_HEADERS = [(name.lower(), value) for name, value in ANSWER_HEADERS]
EXTRA = [(b"ratelimit", b'"standard";r=99;t=60'), (b"x-extra", b"1")]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]


@dataclass
class FakeService:
    """A small upstream served by uvicorn: records every request, answers by path.

    ``/api/status/{code}`` answers ``code``; ``/api/flaky`` answers :attr:`status`;
    ``/api/wait`` answers :attr:`status` once :attr:`release` is set (the fixture sets it on
    teardown, so the server can stop), ``/api/wait-first`` too but only for the first request
    the service sees; ``/api/big`` streams :data:`BIG` without a length and
    ``/api/big-sized`` sends it with one; anything else gets ``201`` and :data:`ANSWER_HEADERS`.
    """

    url: str = ""
    status: int = 200
    seen: list[Seen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/status/{code:int}", self.status_code, methods=METHODS),
                Route("/api/flaky", self.flaky, methods=METHODS),
                Route("/api/wait", self.wait, methods=METHODS),
                Route("/api/wait-first", self.wait_first, methods=METHODS),
                Route("/api/big", self.big, methods=METHODS),
                Route("/api/big-sized", self.big_sized, methods=METHODS),
                Route("/{path:path}", self.answer, methods=METHODS),
            ]
        )

    async def record(self, request: Request) -> None:
        scope = request.scope
        query = scope["query_string"]
        self.seen.append(
            Seen(
                method=request.method,
                target=scope["raw_path"] + (b"?" + query if query else b""),
                headers=list(scope["headers"]),
                body=await request.body(),
            )
        )
        self.arrived.set()

    async def status_code(self, request: Request) -> Response:
        await self.record(request)
        return Response(b"status body", status_code=request.path_params["code"])

    async def flaky(self, request: Request) -> Response:
        await self.record(request)
        return Response(b"flaky body", status_code=self.status)

    async def wait(self, request: Request) -> Response:
        await self.record(request)
        await self.release.wait()
        return Response(b"late", status_code=self.status)

    async def wait_first(self, request: Request) -> Response:
        await self.record(request)
        if len(self.seen) == 1:
            await self.release.wait()
        return Response(b"answer %d" % len(self.seen), status_code=self.status)

    async def big(self, request: Request) -> StreamingResponse:
        await self.record(request)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(BIG), 50_000):
                yield BIG[start : start + 50_000]

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def big_sized(self, request: Request) -> Response:
        await self.record(request)
        return Response(BIG, media_type="application/octet-stream")

    async def answer(self, request: Request) -> Response:
        await self.record(request)
        response = Response(ANSWER_BODY, status_code=201)
        response.raw_headers = list(ANSWER_HEADERS)
        return response


@asynccontextmanager
async def running_service() -> AsyncIterator[FakeService]:
    service = FakeService()
    async with serve_app(service.app()) as url:
        service.url = url
        try:
            yield service
        finally:
            service.release.set()


@pytest.fixture
async def service() -> AsyncIterator[FakeService]:
    async with running_service() as started:
        yield started


@pytest.fixture
async def other_service() -> AsyncIterator[FakeService]:
    async with running_service() as started:
        yield started


@pytest.fixture
def refused_url() -> str:
    """A replica that refuses connections: nothing listens on its port."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class Forwarders:
    """Builds Forwarders like the gateway's lifespan does, and closes them after the test."""

    made: list[Forwarder] = field(default_factory=list)

    def __call__(
        self,
        urls: Sequence[str],
        *,
        max_attempts: int = 2,
        budget: RetryBudget | None = None,
        failure_threshold: int = 3,
        reset_timeout_s: float = 30.0,
        clock: FakeClock | None = None,
    ) -> Forwarder:
        pools = {
            url: H1Pool(url, max_connections=20, connect_timeout_s=scaled(0.5)) for url in urls
        }
        breakers = {
            url: CircuitBreaker(
                url,
                failure_threshold=failure_threshold,
                reset_timeout_s=reset_timeout_s,
                clock=clock or time.monotonic,
            )
            for url in urls
        }
        forwarder = Forwarder(
            pools,
            breakers=breakers,
            budget=budget or RetryBudget(),
            backoff=Backoff(base_s=0.001, cap_s=0.01),
            max_attempts=max_attempts,
            rng=random.Random(7),
        )
        self.made.append(forwarder)
        return forwarder

    async def close(self) -> None:
        for forwarder in self.made:
            await forwarder.close()


@pytest.fixture
async def forwarders() -> AsyncIterator[Forwarders]:
    made = Forwarders()
    try:
        yield made
    finally:
        await made.close()


@dataclass
class Client:
    """The ASGI ``send`` of the gateway's client: collects what the Forwarder relays."""

    messages: list[Message] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        start = self.messages[0]
        assert start["type"] == "http.response.start"
        return int(start["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def bodies(self) -> list[Message]:
        assert all(message["type"] == "http.response.body" for message in self.messages[1:])
        return self.messages[1:]

    @property
    def body(self) -> bytes:
        assert not self.bodies[-1].get("more_body", False)
        assert all(message.get("more_body", False) for message in self.bodies[:-1])
        return b"".join(message.get("body", b"") for message in self.bodies)


def upstream_request(
    method: str = "GET",
    target: str = "/api/trips/t-1",
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    timeout_s: float | None = None,
    retryable: bool | None = None,
) -> UpstreamRequest:
    return UpstreamRequest(
        method=method,
        target=target,
        label="/api/test",
        headers=list(headers),
        body=body,
        timeout_s=scaled(5) if timeout_s is None else timeout_s,
        retryable=method in {"GET", "HEAD"} if retryable is None else retryable,
    )


async def forward(
    forwarder: Forwarder,
    request: UpstreamRequest,
    replicas: Sequence[str],
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Client:
    client = Client()
    await forwarder.forward(request, replicas, client, name="core", extra_headers=extra_headers)
    return client


def state(forwarder: Forwarder, url: str) -> BreakerState:
    return forwarder.breakers[url].state


# The answer and the request


async def test_the_upstream_answer_comes_back_unchanged(
    service: FakeService, forwarders: Forwarders
) -> None:
    forwarder = forwarders([service.url])
    client = await forward(
        forwarder, upstream_request("POST", body=b"{}"), [service.url], extra_headers=EXTRA
    )

    assert client.status == 201
    assert client.headers == [*RELAYED_ANSWER_HEADERS, *EXTRA]
    assert client.body == ANSWER_BODY
    assert len(client.bodies) == 1
    assert len(service.seen) == 1


async def test_the_upstreams_date_and_server_are_not_relayed(
    service: FakeService, forwarders: Forwarders
) -> None:
    async with httpx.AsyncClient() as direct_client:
        direct = await direct_client.get(service.url + "/api/trips/t-1")
    assert {"date", "server"} <= set(direct.headers)
    client = await forward(forwarders([service.url]), upstream_request(), [service.url])
    relayed = {name for name, _ in client.headers}
    assert relayed.isdisjoint({b"date", b"server"})


async def test_method_target_body_and_headers_reach_the_upstream(
    service: FakeService, forwarders: Forwarders
) -> None:
    agent = "Tripline-App/1.0 (Zürich) 名前".encode()
    headers = forward_headers(
        [
            (b"user-agent", agent),
            (b"x-request-id", b"rid-1"),
            (b"content-type", b"application/json"),
            (b"connection", b"close, x-secret"),
            (b"x-secret", b"hop"),
            (b"x-forwarded-for", b"9.9.9.9"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"host", b"gw.test"),
        ],
        client_host="10.1.2.3",
        scheme="https",
        host=b"gw.test",
    )
    request = upstream_request(
        "PATCH", "/api/trips/a%2Fb?x=1&y=%20", headers=headers, body=b'{"status":"x"}'
    )
    await forward(forwarders([service.url]), request, [service.url])

    [seen] = service.seen
    assert seen.method == "PATCH"
    assert seen.target == b"/api/trips/a%2Fb?x=1&y=%20"
    assert seen.body == b'{"status":"x"}'
    assert seen.values(b"user-agent") == [agent]
    assert seen.values(b"x-request-id") == [b"rid-1"]
    assert seen.values(b"content-type") == [b"application/json"]
    assert seen.values(b"cookie") == [b"a=1", b"b=2"]
    assert seen.values(b"x-forwarded-for") == [b"9.9.9.9, 10.1.2.3"]
    assert seen.values(b"x-forwarded-proto") == [b"https"]
    assert seen.values(b"x-forwarded-host") == [b"gw.test"]
    assert seen.values(b"host") == [service.url.removeprefix("http://").encode()]
    assert seen.values(b"content-length") == [b"14"]
    assert seen.values(b"x-secret") == []
    assert b"close" not in seen.values(b"connection")


async def test_no_headers_of_its_own_are_added_to_the_request(
    service: FakeService, forwarders: Forwarders
) -> None:
    await forward(forwarders([service.url]), upstream_request("POST", body=b"x"), [service.url])
    [seen] = service.seen
    added = {name for name, _ in seen.headers}
    assert added.isdisjoint({b"user-agent", b"accept", b"accept-encoding", b"content-type"})


async def test_an_upstream_error_answer_is_relayed(
    service: FakeService, forwarders: Forwarders
) -> None:
    client = await forward(
        forwarders([service.url]), upstream_request("POST", "/api/status/422"), [service.url]
    )
    assert client.status == 422
    assert client.body == b"status body"


# Replicas and retries


async def test_a_refused_connection_moves_on_to_the_next_replica(
    service: FakeService, forwarders: Forwarders, refused_url: str
) -> None:
    replicas = [refused_url, service.url]
    forwarder = forwarders(replicas, failure_threshold=1)
    request = upstream_request("POST", "/api/trips", body=b'{"a":1}', retryable=False)

    client = await forward(forwarder, request, replicas)

    assert client.status == 201
    [seen] = service.seen
    assert seen.body == b'{"a":1}'
    assert state(forwarder, refused_url) is BreakerState.OPEN
    assert state(forwarder, service.url) is BreakerState.CLOSED


async def test_a_connect_timeout_moves_on_to_the_next_replica(
    service: FakeService, forwarders: Forwarders, unanswered_url: str
) -> None:
    replicas = [unanswered_url, service.url]
    forwarder = forwarders(replicas)
    request = upstream_request("POST", "/api/trips", body=b"{}", retryable=False)

    client = await forward(forwarder, request, replicas)

    assert client.status == 201
    assert len(service.seen) == 1


async def test_no_replica_accepting_is_upstream_unavailable(forwarders: Forwarders) -> None:
    replicas = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    forwarder = forwarders(replicas)
    with pytest.raises(UpstreamUnavailable) as caught:
        await forward(forwarder, upstream_request("POST", retryable=False), replicas)
    assert caught.value.status == 502
    assert isinstance(caught.value.__cause__, ConnectFailed)


async def test_a_read_timeout_is_not_repeated_for_a_request_that_may_not_be(
    service: FakeService, other_service: FakeService, forwarders: Forwarders
) -> None:
    replicas = [service.url, other_service.url]
    forwarder = forwarders(replicas, max_attempts=2)
    request = upstream_request("POST", "/api/wait", timeout_s=scaled(0.3), retryable=False)

    with pytest.raises(UpstreamTimeout) as caught:
        await forward(forwarder, request, replicas)

    assert caught.value.status == 504
    assert len(service.seen) == 1
    assert other_service.seen == []


async def test_a_read_timeout_is_repeated_once_for_a_retryable_request(
    service: FakeService, forwarders: Forwarders
) -> None:
    forwarder = forwarders([service.url], max_attempts=2)
    request = upstream_request("GET", "/api/wait", timeout_s=scaled(0.3), retryable=True)

    with pytest.raises(UpstreamTimeout):
        await forward(forwarder, request, [service.url])

    assert [seen.method for seen in service.seen] == ["GET", "GET"]


async def test_a_repeat_that_is_answered_is_relayed(
    service: FakeService, forwarders: Forwarders
) -> None:
    forwarder = forwarders([service.url], max_attempts=2)
    request = upstream_request("GET", "/api/wait-first", timeout_s=scaled(0.3), retryable=True)

    client = await forward(forwarder, request, [service.url])

    assert client.status == 200
    assert client.body == b"answer 2"
    assert len(service.seen) == 2


async def test_one_attempt_only_when_max_attempts_is_one(
    service: FakeService, forwarders: Forwarders
) -> None:
    forwarder = forwarders([service.url], max_attempts=1)
    request = upstream_request("GET", "/api/wait", timeout_s=scaled(0.3), retryable=True)
    with pytest.raises(UpstreamTimeout):
        await forward(forwarder, request, [service.url])
    assert len(service.seen) == 1


async def test_an_exhausted_retry_budget_stops_the_repeat(
    service: FakeService, forwarders: Forwarders
) -> None:
    forwarder = forwarders([service.url], budget=RetryBudget(ratio=0, min_per_s=0))
    request = upstream_request("GET", "/api/wait", timeout_s=scaled(0.3), retryable=True)
    with pytest.raises(UpstreamTimeout):
        await forward(forwarder, request, [service.url])
    assert len(service.seen) == 1


@pytest.mark.parametrize(("retryable", "attempts"), [(True, 2), (False, 1)])
async def test_refused_everywhere_is_tried_again_only_when_retryable(
    retryable: bool, attempts: int, forwarders: Forwarders, refused_url: str
) -> None:
    # Each attempt records a failure on the replica's breaker: count them with a threshold of 2.
    forwarder = forwarders([refused_url], failure_threshold=2, max_attempts=2)
    with pytest.raises(UpstreamUnavailable):
        await forward(forwarder, upstream_request("POST", retryable=retryable), [refused_url])
    opened = attempts == 2
    assert (state(forwarder, refused_url) is BreakerState.OPEN) is opened


# The circuit breaker


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_failing_answers_open_the_breaker(
    status: int, service: FakeService, forwarders: Forwarders
) -> None:
    clock = FakeClock()
    forwarder = forwarders([service.url], failure_threshold=3, reset_timeout_s=30, clock=clock)
    request = upstream_request("POST", f"/api/status/{status}")

    for _ in range(3):
        client = await forward(forwarder, request, [service.url])
        assert client.status == status
    clock.now += 10
    with pytest.raises(CircuitOpen) as caught:
        await forward(forwarder, request, [service.url])

    assert len(service.seen) == 3
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "20"
    assert caught.value.dependency == "core"


async def test_timeouts_open_the_breaker(service: FakeService, forwarders: Forwarders) -> None:
    forwarder = forwarders([service.url], failure_threshold=3)
    request = upstream_request("POST", "/api/wait", timeout_s=scaled(0.2), retryable=False)
    for _ in range(3):
        with pytest.raises(UpstreamTimeout):
            await forward(forwarder, request, [service.url])
    with pytest.raises(CircuitOpen):
        await forward(forwarder, request, [service.url])
    assert len(service.seen) == 3


async def test_a_503_is_no_breaker_failure(service: FakeService, forwarders: Forwarders) -> None:
    forwarder = forwarders([service.url], failure_threshold=3)
    for _ in range(5):
        client = await forward(forwarder, upstream_request("GET", "/api/status/503"), [service.url])
        assert client.status == 503
    assert state(forwarder, service.url) is BreakerState.CLOSED
    assert len(service.seen) == 5


async def test_an_answer_in_between_resets_the_failure_count(
    service: FakeService, forwarders: Forwarders
) -> None:
    forwarder = forwarders([service.url], failure_threshold=3)
    for status in [500, 500, 404, 500, 500]:
        service.status = status
        await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    assert state(forwarder, service.url) is BreakerState.CLOSED


async def test_after_the_reset_timeout_one_probe_goes_through_and_success_closes(
    service: FakeService, forwarders: Forwarders
) -> None:
    clock = FakeClock()
    forwarder = forwarders([service.url], failure_threshold=3, reset_timeout_s=30, clock=clock)
    service.status = 500
    for _ in range(3):
        await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    assert state(forwarder, service.url) is BreakerState.OPEN

    clock.now += 31
    service.status = 200
    service.arrived.clear()
    probe = asyncio.create_task(
        forward(forwarder, upstream_request("GET", "/api/wait"), [service.url])
    )
    await asyncio.wait_for(service.arrived.wait(), scaled(5))
    with pytest.raises(CircuitOpen):
        await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    assert len(service.seen) == 4

    service.release.set()
    client = await asyncio.wait_for(probe, scaled(5))
    assert client.status == 200
    assert state(forwarder, service.url) is BreakerState.CLOSED
    client = await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    assert client.status == 200
    assert len(service.seen) == 5


async def test_a_failed_probe_opens_the_breaker_again(
    service: FakeService, forwarders: Forwarders
) -> None:
    clock = FakeClock()
    forwarder = forwarders([service.url], failure_threshold=2, reset_timeout_s=30, clock=clock)
    service.status = 502
    for _ in range(2):
        await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    clock.now += 31
    await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    with pytest.raises(CircuitOpen) as caught:
        await forward(forwarder, upstream_request("GET", "/api/flaky"), [service.url])
    assert caught.value.headers["Retry-After"] == "30"
    assert len(service.seen) == 3


async def test_an_open_replica_is_skipped_for_the_next(
    service: FakeService, other_service: FakeService, forwarders: Forwarders
) -> None:
    replicas = [service.url, other_service.url]
    forwarder = forwarders(replicas, failure_threshold=1)
    await forward(forwarder, upstream_request("GET", "/api/status/500"), replicas)
    assert state(forwarder, service.url) is BreakerState.OPEN

    client = await forward(forwarder, upstream_request("GET", "/api/status/200"), replicas)

    assert client.status == 200
    assert len(service.seen) == 1
    assert len(other_service.seen) == 1


async def test_every_breaker_open_is_circuit_open_with_the_shortest_wait(
    service: FakeService, other_service: FakeService, forwarders: Forwarders
) -> None:
    clock = FakeClock()
    replicas = [service.url, other_service.url]
    forwarder = forwarders(replicas, failure_threshold=1, reset_timeout_s=30, clock=clock)
    await forward(forwarder, upstream_request("GET", "/api/status/500"), [service.url])
    clock.now += 12
    await forward(forwarder, upstream_request("GET", "/api/status/500"), [other_service.url])
    clock.now += 3

    with pytest.raises(CircuitOpen) as caught:
        await forward(forwarder, upstream_request("GET"), replicas)

    assert caught.value.headers["Retry-After"] == "15"
    assert len(service.seen) + len(other_service.seen) == 2


async def test_open_and_refused_replicas_are_upstream_unavailable(
    service: FakeService, forwarders: Forwarders, refused_url: str
) -> None:
    replicas = [service.url, refused_url]
    forwarder = forwarders(replicas, failure_threshold=1)
    await forward(forwarder, upstream_request("GET", "/api/status/500"), [service.url])
    with pytest.raises(UpstreamUnavailable):
        await forward(forwarder, upstream_request("POST", retryable=False), replicas)


# Bodies


@pytest.mark.parametrize("path", ["/api/big", "/api/big-sized"])
async def test_a_large_answer_arrives_whole(
    path: str, service: FakeService, forwarders: Forwarders
) -> None:
    client = await forward(forwarders([service.url]), upstream_request("GET", path), [service.url])

    assert client.status == 200
    assert client.body == BIG
    lengths = [v for n, v in client.headers if n == b"content-length"]
    assert lengths == ([str(len(BIG)).encode()] if path == "/api/big-sized" else [])
    assert b"transfer-encoding" not in {n for n, _ in client.headers}


async def test_a_large_request_body_reaches_the_upstream(
    service: FakeService, forwarders: Forwarders
) -> None:
    await forward(forwarders([service.url]), upstream_request("PUT", body=BIG), [service.url])
    [seen] = service.seen
    assert seen.body == BIG


async def test_a_head_answer_has_no_body(service: FakeService, forwarders: Forwarders) -> None:
    client = await forward(forwarders([service.url]), upstream_request("HEAD"), [service.url])
    assert client.status == 201
    assert client.body == b""


# Tracing


def traceparent_of(context: trace.SpanContext | None) -> bytes:
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()


def upstream_call_of(exporter: InMemorySpanExporter, parent: trace.Span) -> ReadableSpan:
    """The gateway's CLIENT span for the upstream call, a child of ``parent``."""
    parent_id = parent.get_span_context().span_id
    [call] = [
        span
        for span in exporter.get_finished_spans()
        if span.kind is trace.SpanKind.CLIENT
        and span.parent is not None
        and span.parent.span_id == parent_id
    ]
    return call


async def test_the_trace_context_is_injected(
    service: FakeService, forwarders: Forwarders, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    forwarder = forwarders([service.url])
    with trace.get_tracer("t").start_as_current_span("x") as span:
        await forward(forwarder, upstream_request(), [service.url])

    [seen] = service.seen
    call = upstream_call_of(span_exporter, span)
    assert call.name == "GET /api/test"
    assert (call.attributes or {})["http.response.status_code"] == 201
    assert seen.values(b"traceparent") == [traceparent_of(call.context)]


async def test_no_trace_context_without_a_span(
    service: FakeService, forwarders: Forwarders, span_exporter: InMemorySpanExporter
) -> None:
    await forward(forwarders([service.url]), upstream_request(), [service.url])
    [seen] = service.seen
    assert seen.values(b"traceparent") == []


async def test_the_gateways_trace_context_replaces_the_clients(
    service: FakeService, forwarders: Forwarders, span_exporter: InMemorySpanExporter
) -> None:
    theirs = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    span_exporter.clear()
    forwarder = forwarders([service.url])
    with trace.get_tracer("t").start_as_current_span("x") as span:
        request = upstream_request(headers=[(b"traceparent", theirs), (b"tracestate", b"a=1")])
        await forward(forwarder, request, [service.url])

    [seen] = service.seen
    assert seen.values(b"traceparent") == [
        traceparent_of(upstream_call_of(span_exporter, span).context)
    ]
