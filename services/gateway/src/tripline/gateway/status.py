"""The platform status behind ``GET /health``: ok, degraded or down.

The monitor looks at every dependency (MongoDB, Redis, S3, the workers) and every replica in
the background; the gateway relays its latest look. When the monitor does not answer (or its
look is stale), the gateway falls back to asking the replicas' readiness itself and judges by
the same rule (:mod:`tripline.common.platform`), reporting at best ``degraded``: without the
monitor it cannot see the dependencies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import httpx

from tripline.common.platform import Status, platform_status, service_status
from tripline.gateway.routing import Upstream

STATUSES: frozenset[str] = frozenset(get_args(Status))
Source = Literal["monitor", "gateway"]


@dataclass(frozen=True)
class PlatformStatus:
    status: Status
    components: dict[str, Status]
    checked_at: float
    dependencies: dict[str, str] = field(default_factory=dict)
    source: Source = "gateway"

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "components": self.components,
            "dependencies": self.dependencies,
            "checked_at": self.checked_at,
            "source": self.source,
        }


def from_monitor(body: object, *, now: float, max_age_s: float) -> PlatformStatus | None:
    """The monitor's ``/internal/status`` answer as a status, or None when it is not one or is
    older than ``max_age_s`` (a monitor whose looks have stopped must not be believed)."""
    if not isinstance(body, dict):
        return None
    status, components = body.get("status"), body.get("components")
    dependencies, checked_at = body.get("dependencies", {}), body.get("checked_at")
    if status not in STATUSES or not isinstance(components, dict):
        return None
    if not isinstance(dependencies, dict) or not isinstance(checked_at, int | float):
        return None
    if not all(state in STATUSES for state in components.values()):
        return None
    if now - checked_at > max_age_s:
        return None
    return PlatformStatus(
        status,
        {str(name): state for name, state in components.items()} | {"monitor": "ok"},
        float(checked_at),
        {str(name): str(state) for name, state in dependencies.items()},
        "monitor",
    )


class StatusProbe:
    """Relays the monitor's look, else asks every replica's ``/health/ready``; the answer is
    cached for ``cache_s`` so a flood of ``/health`` calls does not fan out to the upstreams."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        upstreams: Mapping[Upstream, Sequence[str]],
        *,
        monitor_url: str | None,
        timeout_s: float,
        cache_s: float,
        max_age_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._upstreams = upstreams
        self._monitor_url = monitor_url
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._cached: tuple[float, PlatformStatus] | None = None
        self._lock = asyncio.Lock()

    async def status(self) -> PlatformStatus:
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1]
            result = await self._ask_monitor() or await self._probe_replicas()
            self._cached = (now, result)
            return result

    async def _ask_monitor(self) -> PlatformStatus | None:
        if self._monitor_url is None:
            return None
        try:
            response = await self._client.get(
                f"{self._monitor_url}/internal/status", timeout=self._timeout_s
            )
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return from_monitor(body, now=self._wall_clock(), max_age_s=self._max_age_s)

    async def _probe_replicas(self) -> PlatformStatus:
        names = list(self._upstreams)
        answers = await asyncio.gather(
            *(
                asyncio.gather(*(self._ready(url) for url in self._upstreams[name]))
                for name in names
            )
        )
        components: dict[str, Status] = {
            name.value: service_status(ready) for name, ready in zip(names, answers, strict=True)
        }
        # Blind to the dependencies without the monitor: never better than degraded.
        status = platform_status(components, {"monitor": False})
        return PlatformStatus(status, components, self._wall_clock())

    async def _ready(self, base_url: str) -> bool:
        try:
            response = await self._client.get(base_url + "/health/ready", timeout=self._timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
