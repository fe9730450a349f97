"""Outgoing HTTP: one pooled ``httpx.AsyncClient`` per upstream with timeouts on every call."""

from __future__ import annotations

import httpx

from tripline.common.errors import DependencyUnavailable
from tripline.common.guard import DependencyGuard
from tripline.common.settings import ServiceSettings


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


def http_guard(
    name: str, http: httpx.AsyncClient, probe_url: str, settings: ServiceSettings
) -> DependencyGuard:
    """A guard for calls to another HTTP service (run its probe with ``guard.guarding``).

    It opens on the first call that got no answer (a timeout, a refused or dropped connection)
    and refuses with ``DependencyUnavailable(name)`` until a ``GET probe_url`` answers below 500.
    An answer of any status shows the service is there and counts as a success.
    """

    async def probe() -> None:
        answer = await http.get(probe_url)
        if answer.status_code >= 500:
            raise DependencyUnavailable(name, f"{probe_url} answered {answer.status_code}")

    return DependencyGuard(
        name,
        probe=probe,
        is_outage=lambda exc: isinstance(exc, httpx.TransportError),
        refusal=lambda: DependencyUnavailable(name, f"{name} is not answering; probed meanwhile"),
        probe_interval_s=settings.dependency_probe_interval_s,
        probe_timeout_s=settings.dependency_probe_timeout_s,
    )
