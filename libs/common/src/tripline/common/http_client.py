"""Outgoing HTTP: one pooled ``httpx.AsyncClient`` per upstream with timeouts on every call."""

from __future__ import annotations

import httpx


def create_http_client(
    *,
    base_url: str = "",
    connect_timeout_s: float = 2.0,
    read_timeout_s: float = 30.0,
    max_connections: int = 200,
) -> httpx.AsyncClient:
    """A client that never waits forever: connect, read, write and pool waits are all bounded."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections // 2,
            keepalive_expiry=30,
        ),
        follow_redirects=False,
    )
