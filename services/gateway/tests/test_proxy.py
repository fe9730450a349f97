from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Message

from tripline.common.errors import PayloadTooLarge, UpstreamTimeout, UpstreamUnavailable
from tripline.gateway.proxy import HOP_BY_HOP, forward, forward_headers, response_headers

Handler = Callable[[httpx.Request], httpx.Response]


def names(headers: Sequence[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in headers]


def value(headers: Sequence[tuple[str, str]], name: str) -> str:
    found = [v for n, v in headers if n.lower() == name]
    assert len(found) == 1, (name, headers)
    return found[0]


def forwarded(headers: list[tuple[str, str]], client_host: str | None = "10.0.0.9") -> Any:
    return forward_headers(headers, client_host=client_host, scheme="https", host="gw.example")


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
    out = forwarded([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")])
    assert value(out, "x-forwarded-for") == "1.1.1.1, 2.2.2.2, 10.0.0.9"


def test_fields_named_by_connection_are_dropped() -> None:
    out = forwarded([("Connection", "close, X-Hop-Secret"), ("X-Hop-Secret", "1")])
    assert "x-hop-secret" not in names(out)


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


def test_response_headers_keep_repeated_set_cookie_and_content_length() -> None:
    upstream = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")]
    upstream += [("Content-Length", "12"), ("Content-Type", "application/json")]
    upstream += [("Transfer-Encoding", "chunked"), ("Connection", "keep-alive")]
    out = response_headers(httpx.Headers(upstream))
    assert [v for n, v in out if n == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert value(out, "content-length") == "12"
    assert value(out, "content-type") == "application/json"
    assert "transfer-encoding" not in names(out)
    assert "connection" not in names(out)


# forward(): a Starlette request in, a MockTransport upstream behind it.


def make_request(
    method: str = "GET",
    path: str = "/api/trips/1",
    *,
    query: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    chunks: Sequence[bytes] = (b"",),
    raw_path: bytes | None = None,
) -> Request:
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "headers": [(b"host", b"gw.test"), *((n.lower().encode(), v.encode()) for n, v in headers)],
        "client": ("10.1.2.3", 5555),
        "server": ("gw.test", 80),
    }
    return Request(scope, receive)


async def run(response: StreamingResponse) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Send ``response`` as ASGI 2.4 (no disconnect listener racing the body) and collect it."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await response({"type": "http", "asgi": {"spec_version": "2.4"}}, make_request().receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], list(sent[0]["headers"]), body


class Upstreams:
    """A MockTransport handler that records every request and answers per replica host."""

    def __init__(self, answers: dict[str, Handler | Exception]) -> None:
        self.answers = answers
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers[request.url.host]
        if isinstance(answer, Exception):
            raise answer
        return answer(request)

    @property
    def hosts(self) -> list[str]:
        return [request.url.host for request in self.seen]


async def streamed(data: bytes) -> AsyncIterator[bytes]:
    yield data


def reply(status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> httpx.Response:
    # Streamed content: MockTransport pre-reads ``content=b"..."``, which breaks ``aiter_raw``.
    headers = [("Content-Length", str(len(body))), *headers]
    return httpx.Response(status, headers=headers, content=streamed(body))


def ok(request: httpx.Request) -> httpx.Response:
    return reply(200, b'{"ok":true}', [("Content-Type", "application/json")])


async def call(upstreams: Upstreams, request: Request, max_body_bytes: int = 1024) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstreams)) as client:
        response = await forward(
            client, request, ["http://r1", "http://r2"], max_body_bytes=max_body_bytes
        )
        return await run(response)


ANSWER_HEADERS = [("Content-Type", "application/json"), ("Set-Cookie", "a=1")]
ANSWER_HEADERS += [("Set-Cookie", "b=2"), ("Location", "/api/trips/t-1"), ("X-Custom", "yes")]


async def test_the_upstream_answer_comes_back_unchanged() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return reply(201, b'{"id":"t-1"}', ANSWER_HEADERS)

    upstreams = Upstreams({"r1": answer})
    status, headers, body = await call(upstreams, make_request("POST", chunks=[b'{"a":1}']))

    assert status == 201
    assert body == b'{"id":"t-1"}'
    expected = [
        (n.lower().encode(), v.encode()) for n, v in [("Content-Length", "12"), *ANSWER_HEADERS]
    ]
    assert headers == expected
    assert upstreams.hosts == ["r1"]


async def test_method_path_query_body_and_headers_reach_the_upstream() -> None:
    upstreams = Upstreams({"r1": ok})
    request = make_request(
        "PATCH",
        "/api/trips/7",
        query=b"a=1&b=two",
        headers=[("X-Request-Id", "rid"), ("Connection", "close"), ("X-Forwarded-For", "9.9.9.9")],
        chunks=[b'{"st', b'atus":"x"}'],
    )
    await call(upstreams, request)

    [sent] = upstreams.seen
    assert sent.method == "PATCH"
    assert str(sent.url) == "http://r1/api/trips/7?a=1&b=two"
    assert sent.content == b'{"status":"x"}'
    assert sent.headers["x-request-id"] == "rid"
    assert sent.headers["x-forwarded-for"] == "9.9.9.9, 10.1.2.3"
    assert sent.headers["x-forwarded-host"] == "gw.test"
    assert sent.headers["x-forwarded-proto"] == "http"
    assert sent.headers["host"] == "r1"
    assert sent.headers.get("connection") != "close"


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
async def test_a_failed_connection_moves_on_to_the_next_replica(error: Exception) -> None:
    upstreams = Upstreams({"r1": error, "r2": ok})
    status, _, body = await call(upstreams, make_request("POST", chunks=[b"{}"]))

    assert status == 200
    assert body == b'{"ok":true}'
    assert upstreams.hosts == ["r1", "r2"]
    assert upstreams.seen[1].content == b"{}"


async def test_no_replica_accepting_is_upstream_unavailable() -> None:
    upstreams = Upstreams({"r1": httpx.ConnectError("no"), "r2": httpx.ConnectTimeout("no")})
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(upstreams, make_request())
    assert upstreams.hosts == ["r1", "r2"]
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (httpx.ReadTimeout("slow"), UpstreamTimeout),
        (httpx.WriteTimeout("slow"), UpstreamTimeout),
        (httpx.PoolTimeout("full"), UpstreamTimeout),
        (httpx.RemoteProtocolError("garbage"), UpstreamUnavailable),
    ],
)
async def test_a_failure_after_connecting_is_not_retried(error: Exception, raised: type) -> None:
    upstreams = Upstreams({"r1": error, "r2": ok})
    with pytest.raises(raised):
        await call(upstreams, make_request("POST", chunks=[b"{}"]))
    assert upstreams.hosts == ["r1"]


@pytest.mark.parametrize(
    ("headers", "chunks"),
    [([("Content-Length", "11")], [b"x" * 11]), ([], [b"x" * 6, b"x" * 5])],
    ids=["declared", "streamed"],
)
async def test_an_oversized_body_is_refused_before_any_upstream_call(
    headers: list[tuple[str, str]], chunks: list[bytes]
) -> None:
    upstreams = Upstreams({"r1": ok})
    request = make_request("POST", headers=headers, chunks=chunks)
    with pytest.raises(PayloadTooLarge):
        await call(upstreams, request, max_body_bytes=10)
    assert upstreams.seen == []


async def test_a_body_of_exactly_the_limit_is_forwarded() -> None:
    upstreams = Upstreams({"r1": ok})
    request = make_request("POST", headers=[("Content-Length", "10")], chunks=[b"x" * 10])
    status, _, _ = await call(upstreams, request, max_body_bytes=10)
    assert status == 200
    assert upstreams.seen[0].content == b"x" * 10


async def test_the_request_target_is_forwarded_as_received() -> None:
    upstreams = Upstreams({"r1": ok})
    request = make_request("GET", "/api/trips/a/b", raw_path=b"/api/trips/a%2Fb")
    await call(upstreams, request)
    assert upstreams.seen[0].url.raw_path == b"/api/trips/a%2Fb"


async def test_header_values_beyond_ascii_reach_the_upstream_byte_for_byte() -> None:
    upstreams = Upstreams({"r1": ok})
    agent = "Tripline-App/1.0 (Zürich)".encode()
    request = make_request()
    request.scope["headers"].append((b"user-agent", agent))
    await call(upstreams, request)
    [sent] = upstreams.seen
    assert (b"user-agent", agent) in sent.headers.raw


async def test_the_gateway_sets_date_and_server_itself() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = [("Date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Server", "uvicorn")]
        return reply(200, b"{}", [*headers, ("Content-Type", "application/json")])

    _, headers, _ = await call(Upstreams({"r1": answer}), make_request())
    assert {name for name, _ in headers}.isdisjoint({b"date", b"server"})
