"""Forwarding a WebSocket conversation to an upstream replica, frame by frame."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from opentelemetry import propagate
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tripline.common.errors import UpstreamUnavailable
from tripline.common.logs import get_logger
from tripline.gateway.proxy import HOP_BY_HOP, SET_BY_GATEWAY, request_target
from tripline.gateway.routing import websocket_url

# Headers of the client's handshake worth passing on; the rest belong to this hop.
FORWARDED_HANDSHAKE_HEADERS = ("authorization", "user-agent", "x-request-id", "accept-language")
MAX_FRAME_BYTES = 1024 * 1024
WEBSOCKET_HANDSHAKE = frozenset(
    {"sec-websocket-accept", "sec-websocket-extensions", "sec-websocket-protocol"}
)

log = get_logger(__name__)


def relayable_close_code(code: int | None) -> int:
    """The close code to pass on to the other side.

    1005 (no code) and 1006 (connection lost) describe what a peer saw, and may never be sent
    in a close frame (RFC 6455 §7.4.1): they become 1000 and 1011. Codes outside the sendable
    ranges become 1011 as well.
    """
    if code is None or code == 1006:
        return 1011
    if code == 1005:
        return 1000
    if code in range(1000, 1004) or code in range(1007, 1015) or code in range(3000, 5000):
        return code
    return 1011


def handshake_headers(websocket: WebSocket) -> dict[str, str]:
    # The websockets library sends text headers as ASCII; a value it cannot send is dropped
    # rather than failing the whole handshake.
    headers = {
        name: websocket.headers[name]
        for name in FORWARDED_HANDSHAKE_HEADERS
        if name in websocket.headers and websocket.headers[name].isascii()
    }
    forwarded_for = [value.strip() for value in websocket.headers.getlist("x-forwarded-for")]
    if websocket.client:
        forwarded_for.append(websocket.client.host)
    if forwarded_for:
        headers["x-forwarded-for"] = ", ".join(forwarded_for)
    propagate.inject(headers)
    return headers


async def open_upstream(
    websocket: WebSocket, replicas: Sequence[str], *, open_timeout_s: float
) -> ClientConnection | Response:
    """Open the upstream side on the first replica that completes the handshake.

    Returns the connection, or the upstream's own refusal (status and body) to relay to the
    client. Raises :class:`UpstreamUnavailable` when no replica could be reached.
    """
    target = request_target(websocket.scope)
    headers = handshake_headers(websocket)
    subprotocols = websocket.scope.get("subprotocols") or None
    for base_url in replicas:
        try:
            return await connect(
                websocket_url(base_url) + target,
                additional_headers=headers,
                subprotocols=subprotocols,
                open_timeout=open_timeout_s,
                max_size=MAX_FRAME_BYTES,
                ping_interval=20,
                ping_timeout=20,
                compression=None,
            )
        except InvalidStatus as refused:
            upstream = refused.response
            denial = Response(upstream.body or b"", status_code=upstream.status_code)
            # Keep what the client needs to act on (Retry-After, WWW-Authenticate...).
            denial.raw_headers = [
                *(
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in upstream.headers.raw_items()
                    if name.lower() not in HOP_BY_HOP | SET_BY_GATEWAY
                    and name.lower() not in WEBSOCKET_HANDSHAKE
                ),
                (b"content-length", str(len(upstream.body or b"")).encode()),
            ]
            return denial
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            log.warning("websocket upstream unreachable", upstream=base_url, error=str(exc))
    raise UpstreamUnavailable("no replica of the service accepted the WebSocket")


async def relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Pump frames both ways until either side closes, then close the other with its code."""

    async def client_to_upstream() -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(code=relayable_close_code(message.get("code")))
                    return
                text = message.get("text")
                await upstream.send(text if text is not None else message.get("bytes") or b"")
        except ConnectionClosed:
            return

    async def upstream_to_client() -> None:
        try:
            async for frame in upstream:
                if isinstance(frame, str):
                    await websocket.send_text(frame)
                else:
                    await websocket.send_bytes(frame)
        except ConnectionClosed:
            pass
        except WebSocketDisconnect:
            return
        code = relayable_close_code(upstream.close_code)
        try:
            await websocket.close(code=code, reason=upstream.close_reason or "")
        except RuntimeError:
            # The client already went away; nothing left to tell it.
            return

    tasks = {
        asyncio.create_task(client_to_upstream()),
        asyncio.create_task(upstream_to_client()),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
