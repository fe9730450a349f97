"""A small HTTP/1.1 client for the gateway's hot path: keep-alive connections to one upstream.

:func:`encode_request` and :class:`ResponseReader` do no I/O; :class:`H1Pool` moves their bytes
over asyncio transports. Only what our services need: whole small bodies, no upgrades.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ssl import SSLContext, create_default_context
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

_MANAGED_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class UpstreamResponse:
    """A complete answer. Header names are lower-cased, in received order, repeats kept."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class UpstreamError(Exception):
    """Base of this module's errors."""


class ConnectFailed(UpstreamError):
    """No connection: refused, unreachable, or not within connect_timeout_s (or the request's
    timeout_s). Nothing was sent."""


class ResponseTimeout(UpstreamError):
    """No complete answer within timeout_s. Treat the request as possibly processed: it was
    sent, unless every connection stayed busy until the deadline."""


class ConnectionDropped(UpstreamError):
    """The connection broke before a complete answer; the request may have been processed.
    ``reused``: it had carried earlier requests. ``received``: part of the answer arrived."""

    def __init__(self, message: str, *, reused: bool, received: bool) -> None:
        super().__init__(message)
        self.reused = reused
        self.received = received


class ResponseTooLarge(UpstreamError):
    """The answer's body exceeded max_response_bytes."""


class ProtocolError(UpstreamError):
    """The upstream sent something that is not an HTTP/1.1 answer to the request."""


def encode_request(method: str, target: str, host: bytes, headers: Headers, body: bytes) -> bytes:
    """The bytes of one request, ``target`` as given (already percent-encoded), with ``host``
    and, when there is a body or the method expects one, ``content-length``.

    Raises :class:`ValueError` when a CR or LF appears in any part (it would smuggle in a line
    of its own) or ``headers`` holds host, content-length, transfer-encoding or connection.
    """
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"host: " + host]
    for name, value in headers:
        if name.lower() in _MANAGED_HEADERS:
            raise ValueError(f"the client sets {name!r} itself")
        lines.append(name + b": " + value)
    if body or method in _BODY_METHODS:
        lines.append(b"content-length: %d" % len(body))
    lines += (b"", b"")
    head = b"\r\n".join(lines)
    # Two scans of the whole head instead of four per field: the separators are the only CRs
    # and LFs allowed.
    separators = len(lines) - 1
    if head.count(b"\r") != separators or head.count(b"\n") != separators:
        raise ValueError("CR or LF inside the request line or a header field")
    return head + body


class ResponseReader:
    """Sans-I/O: feed the bytes of one answer (1xx interim ones skipped), learn when all of it
    has arrived. One reader per request."""

    def __init__(self, *, head: bool = False, max_body_bytes: int) -> None:
        self._head = head
        self._max_body_bytes = max_body_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_bytes = 0
        # Content-length or chunked: the answer says where it ends, so an EOF cuts it short.
        self._framed = False
        self._complete = False
        self._keep_alive = False
        self._received_any = False

    def feed(self, data: bytes) -> None:
        """Parse the next bytes; any after a complete answer only cancel :attr:`keep_alive`.
        Raises :class:`ProtocolError` or :class:`ResponseTooLarge`: close the connection."""
        self._received_any = True
        if self._complete:
            self._keep_alive = False
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._complete:
                self._keep_alive = False
                return
            if isinstance(exc.__context__, UpstreamError):
                raise exc.__context__ from None
            raise ProtocolError(f"not an HTTP/1.1 answer: {exc!r}") from exc

    def eof(self) -> None:
        """The peer closed: completes an answer delimited by the closure, no other."""
        if self._status >= 200 and not self._complete and not self._framed:
            self._complete = True

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def received_any(self) -> bool:
        return self._received_any

    @property
    def keep_alive(self) -> bool:
        """The connection may carry another request: the answer is complete and framed,
        nothing followed it, the upstream did not ask to close, and it was not a HEAD."""
        return self._keep_alive

    def response(self) -> UpstreamResponse:
        """The answer. Raises :class:`RuntimeError` unless :attr:`complete`."""
        if not self._complete:
            raise RuntimeError("the answer is not complete")
        return UpstreamResponse(self._status, self._headers, b"".join(self._body))

    # httptools calls these while parsing. An exception here stops the parser; feed() sees it.

    def on_message_begin(self) -> None:
        if self._complete:
            raise ProtocolError("bytes after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._status:
            # A trailer field of a chunked body: dropped, as RFC 9110 §6.5.1 allows; merging it
            # into the header section would be wrong for most fields.
            return
        name = name.lower()
        if name == b"content-length":
            self._framed = True
        elif name == b"transfer-encoding":
            # As llhttp: a response is chunked when its last transfer coding is.
            self._framed = value.lower().endswith(b"chunked")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        # httptools cannot be told that the answer to a HEAD has no body: stop here, and never
        # reuse the connection, since a body sent anyway would be read as the next answer.
        if self._head and self._status >= 200:
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if self._complete:
            raise ProtocolError("a body in the answer to a HEAD")
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            raise ResponseTooLarge(f"the answer's body exceeds {self._max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._complete:  # the answer to a HEAD, complete since its headers
            return
        if self._status < 200:
            # An interim answer: llhttp goes on to parse the final one in the same parser.
            self._status = 0
            self._headers = []
            self._framed = False
            return
        # Only now: once the message is over, llhttp forgets the answer's keep-alive state.
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True


class _Connection(asyncio.Protocol):
    """One upstream connection, one request at a time."""

    transport: asyncio.Transport  # set by connection_made, before the pool ever sees it

    def __init__(self, pool: H1Pool) -> None:
        self.pool = pool
        self.reader: ResponseReader | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        self.reused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes, reader: ResponseReader, waiter: asyncio.Future[None]) -> None:
        """Send a request; ``waiter`` resolves when ``reader`` has the whole answer, or fails
        with the error that ended it."""
        self.reader = reader
        self.waiter = waiter
        if self.transport.is_closing():
            waiter.set_exception(self._dropped(received=False))
            return
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        reader, waiter = self.reader, self.waiter
        if reader is None or waiter is None:
            # Bytes nobody asked for: whatever comes next on this connection is suspect.
            self.transport.abort()
            return
        try:
            reader.feed(data)
        except UpstreamError as exc:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if reader.complete and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        reader, waiter = self.reader, self.waiter
        if reader is None or waiter is None:
            self.pool._lost_while_idle(self)
            return
        if waiter.done():
            return
        reader.eof()
        if reader.complete:
            waiter.set_result(None)
        else:
            waiter.set_exception(self._dropped(reader.received_any))

    def _dropped(self, received: bool) -> ConnectionDropped:
        message = f"the upstream closed the connection (reused={self.reused}, received={received})"
        return ConnectionDropped(message, reused=self.reused, received=received)


def _expire(waiter: asyncio.Future[Any], timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(ResponseTimeout(f"no complete answer within {timeout_s} s"))


class H1Pool:
    """Keep-alive HTTP/1.1 connections to one origin. Open in a lifespan; close on shutdown."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 500,
        keepalive_s: float = 4.0,
        connect_timeout_s: float = 2.0,
        max_response_bytes: int = 16 * 1024 * 1024,
        ssl: SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``base_url``: ``http://host:port``, or https (``ssl`` defaults to the system's
        trust); :class:`ValueError` otherwise. Keep ``keepalive_s`` below the upstream's idle
        timeout (uvicorn: 5 s): a connection it is about to close must not be reused."""
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.username:
            raise ValueError(f"not an http(s)://host:port origin: {base_url!r}")
        if url.path not in ("", "/") or url.query or url.fragment:
            raise ValueError(f"an origin has no path, query or fragment: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._host_header = url.netloc.encode("ascii")
        self._ssl = (ssl or create_default_context()) if url.scheme == "https" else None
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._max_response_bytes = max_response_bytes
        self._clock = clock
        # A request holds a slot while it takes or opens a connection and uses it. A connection
        # is opened only when none is idle, so they never outnumber the slots.
        self._slots = asyncio.Semaphore(max_connections)
        # Most recently used last: requests take from the right, cold ones age out on the left.
        self._idle: deque[_Connection] = deque()
        self._connections: set[_Connection] = set()
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def open(self) -> int:
        """Connections idle or in use."""
        return len(self._connections)

    async def request(
        self, method: str, target: str, headers: Headers, body: bytes = b"", *, timeout_s: float
    ) -> UpstreamResponse:
        """The whole answer, within ``timeout_s`` from now (waiting for a connection included).

        Raises :class:`ValueError` as :func:`encode_request` (nothing sent), or one of the
        :class:`UpstreamError` classes above (the base class once the pool is closed).
        """
        data = encode_request(method, target, self._host_header, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise ResponseTimeout(f"no connection came free within {timeout_s} s") from None
        else:
            await self._slots.acquire()
        try:
            if self._closed:
                raise UpstreamError("the pool is closed")
            conn = self._take_idle() or await self._connect(loop, deadline)
            reader = ResponseReader(head=method == "HEAD", max_body_bytes=self._max_response_bytes)
            waiter: asyncio.Future[None] = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter, timeout_s)
            try:
                conn.send(data, reader, waiter)
                await waiter
            except BaseException:
                # Timed out, failed or cancelled: an answer may still be on its way.
                self._discard(conn)
                raise
            finally:
                timer.cancel()
            conn.reader = conn.waiter = None
            if reader.keep_alive and not conn.transport.is_closing():
                conn.reused = True
                conn.idle_since = self._clock()
                self._idle.append(conn)
            else:
                self._discard(conn)
        finally:
            self._slots.release()
        return reader.response()

    async def close(self) -> None:
        """Close every connection: requests in flight fail with :class:`ConnectionDropped`,
        later ones with :class:`UpstreamError`."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._connections):
            self._discard(conn)
        # Let the transports report their closing before the loop is torn down.
        await asyncio.sleep(0)

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        if idle:
            warm_since = self._clock() - self._keepalive_s
            while idle and idle[0].idle_since < warm_since:
                self._discard(idle.popleft())
            while idle:
                conn = idle.pop()
                if not conn.transport.is_closing():
                    return conn
                self._discard(conn)
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        conn = _Connection(self)
        try:
            async with asyncio.timeout(min(self._connect_timeout_s, deadline - loop.time())):
                hostname = self._host if self._ssl else None
                await loop.create_connection(
                    lambda: conn, self._host, self._port, ssl=self._ssl, server_hostname=hostname
                )
        except OSError as exc:  # TimeoutError included
            raise ConnectFailed(f"{self._host}:{self._port}: {exc!r}") from exc
        if self._closed:
            conn.transport.abort()
            raise UpstreamError("the pool is closed")
        self._connections.add(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        conn.transport.abort()
        self._connections.discard(conn)

    def _lost_while_idle(self, conn: _Connection) -> None:
        # Also called for connections already discarded, which are in no list.
        if conn in self._idle:
            self._idle.remove(conn)
            self._discard(conn)
