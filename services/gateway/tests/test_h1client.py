from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tripline.devstack.harness import scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.gateway.h1client import (
    ConnectFailed,
    ConnectionDropped,
    H1Pool,
    ProtocolError,
    ResponseReader,
    ResponseTimeout,
    ResponseTooLarge,
    UpstreamError,
    UpstreamResponse,
    encode_request,
)

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


# encode_request


def test_a_get_is_encoded_exactly() -> None:
    encoded = encode_request(
        "GET", "/a%2Fb?q=1", b"svc:8000", [(b"accept", b"*/*"), (b"X-Caf", b"caf\xc3\xa9")], b""
    )
    assert encoded == (
        b"GET /a%2Fb?q=1 HTTP/1.1\r\nhost: svc:8000\r\naccept: */*\r\nX-Caf: caf\xc3\xa9\r\n\r\n"
    )


def test_a_body_gets_its_length() -> None:
    encoded = encode_request("POST", "/r", b"h", [(b"content-type", b"json")], b'{"a":1}')
    assert encoded == (
        b'POST /r HTTP/1.1\r\nhost: h\r\ncontent-type: json\r\ncontent-length: 7\r\n\r\n{"a":1}'
    )


@pytest.mark.parametrize(("method", "sent"), [("PUT", True), ("PATCH", True), ("DELETE", False)])
def test_an_empty_body_has_a_length_only_where_the_method_expects_a_body(
    method: str, sent: bool
) -> None:
    encoded = encode_request(method, "/r", b"h", [], b"")
    assert (b"content-length: 0\r\n" in encoded) is sent
    assert encoded.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("method", "target", "host", "header"),
    [
        ("GET", "/r", b"h", (b"x-a", b"1\r\nx-injected: 1")),
        ("GET", "/r", b"h", (b"x-a", b"1\nx-injected: 1")),
        ("GET", "/r", b"h", (b"x-a", b"1\r")),
        ("GET", "/r", b"h", (b"x-a\r\nx-b", b"1")),
        ("GET", "/r HTTP/1.1\r\nx-injected: 1\r\n", b"h", (b"x-a", b"1")),
        ("GET\n", "/r", b"h", (b"x-a", b"1")),
        ("GET", "/r", b"h\r\nx-injected: 1", (b"x-a", b"1")),
    ],
)
def test_a_cr_or_lf_inside_a_field_is_refused(
    method: str, target: str, host: bytes, header: tuple[bytes, bytes]
) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_request(method, target, host, [header], b"")


@pytest.mark.parametrize(
    "name", [b"host", b"Host", b"content-length", b"Transfer-Encoding", b"connection"]
)
def test_fields_the_client_manages_are_refused(name: bytes) -> None:
    with pytest.raises(ValueError, match="sets"):
        encode_request("GET", "/r", b"h", [(name, b"x")], b"")


# ResponseReader


def read(*parts: bytes, head: bool = False, limit: int = 1 << 20) -> ResponseReader:
    reader = ResponseReader(head=head, max_body_bytes=limit)
    for part in parts:
        reader.feed(part)
    return reader


def test_a_content_length_answer() -> None:
    reader = read(
        b"HTTP/1.1 201 Created\r\nContent-Type: a/b\r\nContent-Length: 5\r\n\r\nhel", b"lo"
    )
    assert reader.complete
    assert reader.keep_alive
    assert reader.response() == UpstreamResponse(
        201, [(b"content-type", b"a/b"), (b"content-length", b"5")], b"hello"
    )


def test_an_answer_is_incomplete_until_its_last_byte() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhell")
    assert reader.received_any
    assert not reader.complete
    with pytest.raises(RuntimeError):
        reader.response()
    reader.eof()
    assert not reader.complete


def test_a_chunked_answer() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n")
    assert not reader.complete
    reader.feed(b"0\r\n\r\n")
    assert reader.complete
    assert reader.keep_alive
    assert reader.response().body == b"hello"


def test_trailer_fields_are_dropped() -> None:
    reader = read(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nx-checksum: abc\r\nx-other: 1\r\n\r\n"
    )
    assert reader.complete
    assert reader.keep_alive
    assert reader.response() == UpstreamResponse(
        200, [(b"transfer-encoding", b"chunked")], b"hello"
    )


def test_an_answer_delimited_by_close_completes_at_eof() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhel", b"lo")
    assert not reader.complete
    reader.eof()
    assert reader.complete
    assert not reader.keep_alive
    assert reader.response().body == b"hello"


def test_an_eof_inside_the_head_leaves_the_answer_incomplete() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ncontent-ty")
    reader.eof()
    assert not reader.complete


def test_an_eof_inside_a_chunked_body_leaves_the_answer_incomplete() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n")
    reader.eof()
    assert not reader.complete


def test_the_answer_to_a_head_completes_at_its_headers() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n", head=True)
    assert reader.complete
    assert not reader.keep_alive
    assert reader.response() == UpstreamResponse(200, [(b"content-length", b"1234")], b"")


def test_a_body_sent_anyway_after_a_head_is_not_taken_for_the_answer() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody", head=True)
    assert reader.complete
    assert reader.response().body == b""


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("length", [b"", b"content-length: 7\r\n"])
def test_answers_that_have_no_body(status: int, length: bytes) -> None:
    reader = read(b"HTTP/1.1 %d X\r\n%s\r\n" % (status, length))
    assert reader.complete
    assert reader.keep_alive
    assert reader.response().status == status
    assert reader.response().body == b""


def test_interim_answers_are_skipped() -> None:
    reader = read(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\n",
    )
    assert not reader.complete
    reader.feed(b"content-length: 2\r\n\r\nok")
    assert reader.response() == UpstreamResponse(200, [(b"content-length", b"2")], b"ok")
    assert reader.keep_alive


def test_an_eof_after_an_interim_answer_leaves_it_incomplete() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\n")
    reader.eof()
    assert not reader.complete


def test_names_are_lower_cased_and_repeats_kept_in_order() -> None:
    reader = read(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Name: caf\xc3\xa9 \xe9\r\nSET-COOKIE: b=2\r\n"
        b"content-length: 0\r\n\r\n"
    )
    assert reader.response().headers == [
        (b"set-cookie", b"a=1"),
        (b"x-name", b"caf\xc3\xa9 \xe9"),
        (b"set-cookie", b"b=2"),
        (b"content-length", b"0"),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ],
)
def test_an_answer_that_closes_the_connection_is_not_kept_alive(answer: bytes) -> None:
    reader = read(answer)
    assert reader.complete
    assert not reader.keep_alive


@pytest.mark.parametrize("extra", [b"x", b"HTTP/1.1 200 OK\r\n"])
def test_bytes_after_the_answer_keep_it_but_not_the_connection(extra: bytes) -> None:
    together = read(OK + extra)
    later = read(OK, extra)
    for reader in (together, later):
        assert reader.response() == UpstreamResponse(200, [(b"content-length", b"2")], b"ok")
        assert not reader.keep_alive


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nhello world",
    ],
)
def test_a_body_beyond_the_limit_is_too_large(answer: bytes) -> None:
    with pytest.raises(ResponseTooLarge):
        read(answer, limit=10)
    assert read(answer, limit=11).received_any


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ],
)
def test_what_is_not_http_is_a_protocol_error(answer: bytes) -> None:
    with pytest.raises(ProtocolError):
        read(answer)


TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1)
VALUE = st.binary().map(
    lambda raw: bytes(b for b in raw if b == 0x20 or 0x21 <= b <= 0x7E or b >= 0x80).strip(b" ")
)


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, UpstreamResponse, bool]:
    """An answer's bytes, the response they stand for, and whether it ends at EOF."""
    status = draw(st.integers(200, 599))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    body = b"" if status in (204, 304) else draw(st.binary(max_size=300))
    headers = [
        (name.encode(), value)
        for name, value in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=6))
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    if framing == "chunked" and status not in (204, 304):
        headers.append((b"Transfer-Encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        wire_body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    elif framing == "length" or status in (204, 304):
        headers.append((b"Content-Length", b"%d" % len(body)))
        wire_body = body
    else:
        wire_body = body
    head = b"HTTP/1.1 %d Reason\r\n" % status
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    expected = UpstreamResponse(status, [(n.lower(), v) for n, v in headers], body)
    return head + b"\r\n" + wire_body, expected, framing == "close" and status not in (204, 304)


def read_in_parts(wire: bytes, cuts: list[int], *, until_eof: bool) -> UpstreamResponse:
    reader = ResponseReader(max_body_bytes=1 << 20)
    bounds = sorted({0, len(wire), *(cut % (len(wire) + 1) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        reader.feed(wire[start:end])
    if until_eof:
        reader.eof()
    return reader.response()


@given(answers(), st.lists(st.integers(min_value=0), max_size=30))
def test_any_split_of_an_answer_reads_the_same(
    answer: tuple[bytes, UpstreamResponse, bool], cuts: list[int]
) -> None:
    wire, expected, until_eof = answer
    assert read_in_parts(wire, [], until_eof=until_eof) == expected
    assert read_in_parts(wire, cuts, until_eof=until_eof) == expected


# H1Pool on real sockets


@pytest.mark.parametrize(
    "url", ["ftp://h:1", "http://", "http://h:1/api", "http://u:p@h:1", "http://h:1?x", "h:1"]
)
def test_only_an_http_origin_is_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        H1Pool(url)


async def echo(request: Request) -> Response:
    """Tells what arrived, byte for byte, and from which client port."""
    if request.query_params.get("sleep"):
        await asyncio.sleep(float(request.query_params["sleep"]))
    scope = request.scope
    query = scope["query_string"]
    seen = {
        "method": request.method,
        "target": (scope["raw_path"] + (b"?" + query if query else b"")).decode("latin-1"),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body": (await request.body()).decode("latin-1"),
        "port": scope["client"][1],
    }
    response = Response(json.dumps(seen), media_type="application/json")
    response.raw_headers.append((b"x-reply", b"caf\xc3\xa9 \xe9"))
    if request.query_params.get("close"):
        response.raw_headers.append((b"connection", b"close"))
    return response


@pytest.fixture(scope="module")
async def app_url() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "HEAD"])])
    async with serve_app(app) as url:
        yield url


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., H1Pool]]:
    made: list[H1Pool] = []

    def make(url: str, **options: object) -> H1Pool:
        made.append(H1Pool(url, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for pool in made:
        await pool.close()


def seen(response: UpstreamResponse) -> dict[str, object]:
    assert response.status == 200
    decoded: dict[str, object] = json.loads(response.body)
    return decoded


async def test_a_get_arrives_byte_for_byte_and_so_does_its_answer(
    app_url: str, pools: Callable[..., H1Pool]
) -> None:
    pool = pools(app_url)
    headers = [(b"x-utf8", "café".encode()), (b"x-latin1", "café".encode("latin-1"))]
    response = await pool.request("GET", "/rides/a%2Fb?q=x%2Fy&r=1", headers, timeout_s=scaled(5))
    echoed = seen(response)
    assert echoed["method"] == "GET"
    assert echoed["target"] == "/rides/a%2Fb?q=x%2Fy&r=1"
    assert echoed["headers"] == [
        ["host", app_url.removeprefix("http://")],
        ["x-utf8", "café".encode().decode("latin-1")],
        ["x-latin1", "café"],
    ]
    assert echoed["body"] == ""
    assert (b"x-reply", b"caf\xc3\xa9 \xe9") in response.headers


async def test_a_post_carries_its_body(app_url: str, pools: Callable[..., H1Pool]) -> None:
    pool = pools(app_url)
    body = json.dumps({"pickup": "Gare du Nord", "seats": 2}).encode()
    headers = [(b"content-type", b"application/json")]
    echoed = seen(await pool.request("POST", "/rides?x=1", headers, body, timeout_s=scaled(5)))
    assert echoed["method"] == "POST"
    assert echoed["body"] == body.decode()
    assert ["content-length", str(len(body))] in echoed["headers"]  # type: ignore[operator]


async def test_sequential_requests_share_one_connection(
    app_url: str, pools: Callable[..., H1Pool]
) -> None:
    pool = pools(app_url)
    ports = {
        seen(await pool.request("GET", f"/r/{i}", [], timeout_s=scaled(5)))["port"]
        for i in range(20)
    }
    assert len(ports) == 1
    assert (pool.open, pool.idle) == (1, 1)


async def test_concurrent_requests_stay_within_max_connections(
    app_url: str, pools: Callable[..., H1Pool]
) -> None:
    pool = pools(app_url, max_connections=5)
    responses = await asyncio.gather(
        *(pool.request("GET", f"/r/{i}?sleep=0.01", [], timeout_s=scaled(10)) for i in range(50))
    )
    assert [seen(r)["target"] for r in responses] == [f"/r/{i}?sleep=0.01" for i in range(50)]
    assert len({seen(r)["port"] for r in responses}) == 5
    assert (pool.open, pool.idle) == (5, 5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_connection_idle_too_long_is_replaced(
    app_url: str, pools: Callable[..., H1Pool]
) -> None:
    clock = FakeClock()
    pool = pools(app_url, keepalive_s=2.0, clock=clock)
    first = seen(await pool.request("GET", "/a", [], timeout_s=scaled(5)))["port"]
    clock.now += 1.9
    assert seen(await pool.request("GET", "/b", [], timeout_s=scaled(5)))["port"] == first
    clock.now += 2.1
    assert seen(await pool.request("GET", "/c", [], timeout_s=scaled(5)))["port"] != first
    assert pool.open == 1


async def test_the_most_recently_used_connection_is_reused_and_cold_ones_age_out(
    app_url: str, pools: Callable[..., H1Pool]
) -> None:
    clock = FakeClock()
    pool = pools(app_url, keepalive_s=2.0, clock=clock)
    early, late = await asyncio.gather(
        pool.request("GET", "/a?sleep=0.01", [], timeout_s=scaled(5)),
        pool.request("GET", "/a?sleep=0.2", [], timeout_s=scaled(5)),
    )
    assert pool.idle == 2
    clock.now += 1.0
    warm = seen(await pool.request("GET", "/b", [], timeout_s=scaled(5)))["port"]
    assert warm == seen(late)["port"] != seen(early)["port"]
    clock.now += 1.5
    assert seen(await pool.request("GET", "/c", [], timeout_s=scaled(5)))["port"] == warm
    assert (pool.open, pool.idle) == (1, 1)


@pytest.mark.parametrize(("method", "query"), [("GET", "?close=1"), ("HEAD", "")])
async def test_a_connection_that_may_not_carry_another_request_is_closed(
    app_url: str, pools: Callable[..., H1Pool], method: str, query: str
) -> None:
    pool = pools(app_url)
    first = await pool.request(method, f"/a{query}", [], timeout_s=scaled(5))
    assert first.status == 200
    assert (pool.open, pool.idle) == (0, 0)
    assert (await pool.request(method, f"/b{query}", [], timeout_s=scaled(5))).status == 200


async def test_a_refused_connection_is_connect_failed(pools: Callable[..., H1Pool]) -> None:
    pool = pools(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailed):
        await pool.request("GET", "/", [], timeout_s=scaled(5))
    assert pool.open == 0


@pytest.mark.parametrize(("connect_timeout_s", "timeout_s"), [(0.2, 5.0), (5.0, 0.2)])
async def test_a_connect_that_does_not_complete_in_time_is_connect_failed(
    unanswered_url: str, pools: Callable[..., H1Pool], connect_timeout_s: float, timeout_s: float
) -> None:
    pool = pools(unanswered_url, connect_timeout_s=scaled(connect_timeout_s))
    started = time.monotonic()
    with pytest.raises(ConnectFailed):
        await pool.request("GET", "/", [], timeout_s=scaled(timeout_s))
    assert time.monotonic() - started < scaled(2)
    assert pool.open == 0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something the loop does on its next turns; fail if it never happens."""
    deadline = time.monotonic() + scaled(5)
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the pool never {what}")
        await asyncio.sleep(0.005)


@dataclass
class RawServer:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


async def read_request(reader: asyncio.StreamReader, server: RawServer) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    server.requests.append(head)
    return head


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RawServer], Awaitable[bytes]]


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[RawServer]:
    """A server whose every connection runs ``handle`` and then writes what it returns and
    closes; ``closed`` is set when a client closes its side first."""
    port = free_port()
    server = RawServer(f"http://127.0.0.1:{port}")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.writers.append(writer)
        try:
            writer.write(await handle(reader, writer, server))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            server.closed.set()
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()
        await listener.wait_closed()


async def test_no_answer_is_a_response_timeout_and_frees_the_connection(
    pools: Callable[..., H1Pool],
) -> None:
    async def silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        await reader.readexactly(1)
        return b""

    async with raw_server(silent) as server:
        pool = pools(server.url)
        started = time.monotonic()
        with pytest.raises(ResponseTimeout):
            await pool.request("GET", "/", [], timeout_s=scaled(0.3))
        assert scaled(0.3) <= time.monotonic() - started < scaled(2)
        assert pool.open == 0
        await asyncio.wait_for(server.closed.wait(), scaled(5))


async def test_a_close_after_the_request_is_dropped_with_nothing_received(
    pools: Callable[..., H1Pool],
) -> None:
    async def hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        return b""

    async with raw_server(hang_up) as server:
        pool = pools(server.url)
        with pytest.raises(ConnectionDropped) as dropped:
            await pool.request("GET", "/", [], timeout_s=scaled(5))
        assert (dropped.value.reused, dropped.value.received) == (False, False)
        assert server.requests == [
            b"GET / HTTP/1.1\r\nhost: " + server.url[7:].encode() + b"\r\n\r\n"
        ]
        assert pool.open == 0


async def test_a_close_inside_the_answer_is_dropped_with_something_received(
    pools: Callable[..., H1Pool],
) -> None:
    async def half(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        return b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf"

    async with raw_server(half) as server:
        pool = pools(server.url)
        with pytest.raises(ConnectionDropped) as dropped:
            await pool.request("GET", "/", [], timeout_s=scaled(5))
        assert dropped.value.received
        assert pool.open == 0


async def test_an_answer_ended_by_the_close_is_complete(pools: Callable[..., H1Pool]) -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        return b"HTTP/1.1 200 OK\r\n\r\nall of it"

    async with raw_server(until_close) as server:
        pool = pools(server.url)
        response = await pool.request("GET", "/", [], timeout_s=scaled(5))
        assert response.body == b"all of it"
        assert pool.open == 0


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n", ResponseTooLarge),
        (b"junk\r\n", ProtocolError),
    ],
)
async def test_a_bad_answer_fails_and_closes_the_connection(
    pools: Callable[..., H1Pool], answer: bytes, error: type[Exception]
) -> None:
    async def bad(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        return answer + b"x" * 20

    async with raw_server(bad) as server:
        pool = pools(server.url, max_response_bytes=10)
        with pytest.raises(error):
            await pool.request("GET", "/", [], timeout_s=scaled(5))
        assert pool.open == 0


async def test_an_idle_connection_the_upstream_closed_is_not_reused(
    pools: Callable[..., H1Pool],
) -> None:
    async def once(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        return OK

    async with raw_server(once) as server:
        pool = pools(server.url)
        for _ in range(2):
            assert (await pool.request("GET", "/", [], timeout_s=scaled(5))).body == b"ok"
            await until(lambda: pool.idle == 0, "noticed the closure")
            assert pool.open == 0
        assert server.connections == 2


async def test_a_closing_idle_connection_is_not_reused(pools: Callable[..., H1Pool]) -> None:
    async def twice(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        writer.write(OK)
        await read_request(reader, server)
        return OK

    async with raw_server(twice) as server:
        pool = pools(server.url)
        await pool.request("GET", "/", [], timeout_s=scaled(5))
        # The moment between noticing a closure (the transport is closing) and hearing of it
        # (connection_lost, a loop turn later), which no server can time: made by hand.
        pool._idle[-1].transport.close()
        assert (await pool.request("GET", "/", [], timeout_s=scaled(5))).body == b"ok"
        assert server.connections == 2


async def test_bytes_sent_to_an_idle_connection_close_it(pools: Callable[..., H1Pool]) -> None:
    async def then_junk(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        writer.write(OK)
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        await reader.readexactly(1)
        return b""

    async with raw_server(then_junk) as server:
        pool = pools(server.url)
        await pool.request("GET", "/", [], timeout_s=scaled(5))
        assert pool.idle == 1
        await until(lambda: pool.idle == 0, "dropped the connection")
        await asyncio.wait_for(server.closed.wait(), scaled(5))
        assert pool.open == 0


async def test_a_cancelled_request_closes_its_connection(pools: Callable[..., H1Pool]) -> None:
    async def silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> bytes:
        await read_request(reader, server)
        await reader.readexactly(1)
        return b""

    async with raw_server(silent) as server:
        pool = pools(server.url)
        task = asyncio.create_task(pool.request("GET", "/", [], timeout_s=scaled(10)))
        await until(lambda: len(server.requests) == 1, "sent the request")
        assert pool.open == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.open == 0
        await asyncio.wait_for(server.closed.wait(), scaled(5))


async def test_a_request_waits_for_a_free_connection_within_its_timeout(
    app_url: str, pools: Callable[..., H1Pool]
) -> None:
    pool = pools(app_url, max_connections=1)
    slow = asyncio.create_task(
        pool.request("GET", f"/?sleep={scaled(0.5)}", [], timeout_s=scaled(5))
    )
    await asyncio.sleep(scaled(0.05))
    with pytest.raises(ResponseTimeout):
        await pool.request("GET", "/", [], timeout_s=scaled(0.1))
    waiting = asyncio.create_task(pool.request("GET", "/b", [], timeout_s=scaled(5)))
    cancelled = asyncio.create_task(pool.request("GET", "/c", [], timeout_s=scaled(5)))
    await asyncio.sleep(0)
    cancelled.cancel()
    port = seen(await slow)["port"]
    assert seen(await waiting)["port"] == port
    assert cancelled.cancelled()
    assert (pool.open, pool.idle) == (1, 1)


async def answer_fast_hang_slow(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
) -> bytes:
    """Answers requests for ``/fast`` on the same connection; holds one for anything else."""
    while b"/fast" in await read_request(reader, server):
        await asyncio.sleep(0.01)
        writer.write(OK)
    await reader.readexactly(1)
    return b""


async def test_close_ends_every_connection_and_later_requests(
    pools: Callable[..., H1Pool],
) -> None:
    async with raw_server(answer_fast_hang_slow) as server:
        pool = pools(server.url, max_connections=2)
        await asyncio.gather(
            *(pool.request("GET", "/fast", [], timeout_s=scaled(5)) for _ in range(2))
        )
        assert (pool.open, pool.idle) == (2, 2)
        in_flight = [
            asyncio.create_task(pool.request("GET", "/hang", [], timeout_s=scaled(5)))
            for _ in range(3)
        ]
        await until(lambda: len(server.requests) == 4, "sent the requests")
        await pool.close()
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionDropped, ConnectionDropped, UpstreamError]
        assert pool.open == 0
        with pytest.raises(UpstreamError, match="closed"):
            await pool.request("GET", "/fast", [], timeout_s=scaled(5))
        await asyncio.sleep(scaled(0.05))
        assert server.connections == 2


async def test_a_connection_opened_while_closing_is_not_kept(
    pools: Callable[..., H1Pool],
) -> None:
    async with raw_server(answer_fast_hang_slow) as server:
        pool = pools(server.url)
        request = asyncio.create_task(pool.request("GET", "/fast", [], timeout_s=scaled(5)))
        await asyncio.sleep(0)
        await pool.close()
        with pytest.raises(UpstreamError, match="closed"):
            await request
        assert pool.open == 0
