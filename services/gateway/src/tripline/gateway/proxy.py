"""Forwarding HTTP requests to an upstream, translating transport failures into problems."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from tripline.common.errors import UpstreamTimeout, UpstreamUnavailable
from tripline.common.logs import get_logger
from tripline.common.validation import read_body

# RFC 9110 §7.6.1 connection-specific fields, plus those the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

log = get_logger(__name__)


# Set by the gateway alone: a client's own values would let it spoof scheme and host.
REPLACED = frozenset({"x-forwarded-proto", "x-forwarded-host"})


def connection_listed(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Field names a ``Connection`` header declares hop-by-hop (RFC 9110 §7.6.1)."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    )


def forward_headers(
    headers: Iterable[tuple[str, str]], *, client_host: str | None, scheme: str, host: str
) -> list[tuple[str, str]]:
    """Headers for the upstream request: the client's minus hop-by-hop, plus forwarding ones.

    Every ``X-Forwarded-For`` line is kept, in order, with the client's address appended.
    """
    headers = list(headers)
    dropped = HOP_BY_HOP | REPLACED | connection_listed(headers)
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    request_id: str | None = None
    for name, value in headers:
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "x-forwarded-for":
            forwarded_for.append(value.strip())
            continue
        if lower == "x-request-id":
            request_id = value
        out.append((name, value))
    if client_host:
        forwarded_for.append(client_host)
    if forwarded_for:
        out.append(("x-forwarded-for", ", ".join(forwarded_for)))
    out.append(("x-forwarded-proto", scheme))
    out.append(("x-forwarded-host", host))
    if request_id is None:
        out.append(("x-request-id", uuid.uuid4().hex))
    return out


# Singletons the gateway's own server sets on every response it sends.
SET_BY_GATEWAY = frozenset({"date", "server"})


def response_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The upstream's response headers worth relaying (its Content-Length included)."""
    dropped = (HOP_BY_HOP - {"content-length"}) | SET_BY_GATEWAY
    return [(name, value) for name, value in headers.multi_items() if name.lower() not in dropped]


def latin1(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Headers as the bytes the client sent: the ASGI server decoded them as latin-1, and
    httpx would re-encode text as ASCII and fail on a ``User-Agent: ... (Zürich)``."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def request_target(scope: Mapping[str, Any]) -> str:
    """The path and query exactly as the client sent them (``%2F`` stays encoded)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (raw_path + (b"?" + query if query else b"")).decode("latin-1")


async def forward(
    client: httpx.AsyncClient,
    request: Request,
    replicas: Sequence[str],
    *,
    max_body_bytes: int,
) -> StreamingResponse:
    """Send ``request`` to the first replica that accepts a connection and stream its answer.

    Only connection failures move on to the next replica (nothing was sent, so any method is
    safe to retry). Raises :class:`UpstreamUnavailable` when no replica accepts and
    :class:`UpstreamTimeout` when one accepted but did not answer in time.
    """
    # Bodies through the gateway are small JSON: files go straight to S3.
    body = await read_body(request, max_bytes=max_body_bytes)
    headers = forward_headers(
        request.headers.items(),
        client_host=request.client.host if request.client else None,
        scheme=request.url.scheme,
        host=request.headers.get("host", ""),
    )
    target = request_target(request.scope)
    last_error: Exception | None = None
    for base_url in replicas:
        upstream_request = client.build_request(
            request.method, base_url + target, headers=latin1(headers), content=body
        )
        try:
            upstream = await client.send(upstream_request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            log.warning("upstream refused connection", upstream=base_url, error=str(exc))
            last_error = exc
            continue
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("the service did not answer in time") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("the connection to the service failed") from exc
        response = StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            background=BackgroundTask(upstream.aclose),
        )
        # Raw headers keep repeated fields (Set-Cookie, Link) that a dict would merge.
        response.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response_headers(upstream.headers)
        ]
        return response
    raise UpstreamUnavailable("no replica of the service accepted the connection") from last_error
