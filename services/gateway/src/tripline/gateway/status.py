"""The platform status behind ``GET /health``: ok, degraded or down.

Critical paths (SOS in core, live tracking) decide ``down``: the platform is down when either
has no ready replica. Anything else unready makes it ``degraded``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from tripline.gateway.routing import Upstream

Status = Literal["ok", "degraded", "down"]
CRITICAL: frozenset[Upstream] = frozenset({Upstream.CORE, Upstream.TRACKING})


def component_status(ready: Sequence[bool]) -> Status:
    if all(ready):
        return "ok"
    return "degraded" if any(ready) else "down"


def overall_status(components: Mapping[Upstream, Status]) -> Status:
    """Combine per-upstream states into the platform's state."""
    if any(components[name] == "down" for name in CRITICAL if name in components):
        return "down"
    if all(state == "ok" for state in components.values()):
        return "ok"
    return "degraded"


@dataclass(frozen=True)
class PlatformStatus:
    status: Status
    components: dict[Upstream, Status]
    checked_at: float

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "components": {name.value: state for name, state in self.components.items()},
            "checked_at": self.checked_at,
        }


class StatusProbe:
    """Asks every replica's ``/health/ready`` and caches the answer for ``cache_s``.

    The cache keeps a flood of ``/health`` calls from fanning out to every upstream.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        upstreams: Mapping[Upstream, Sequence[str]],
        *,
        timeout_s: float,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._upstreams = upstreams
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._cached: tuple[float, PlatformStatus] | None = None
        self._lock = asyncio.Lock()

    async def status(self) -> PlatformStatus:
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1]
            result = await self._probe()
            self._cached = (now, result)
            return result

    async def _probe(self) -> PlatformStatus:
        names = list(self._upstreams)
        answers = await asyncio.gather(
            *(
                asyncio.gather(*(self._ready(url) for url in self._upstreams[name]))
                for name in names
            )
        )
        components = {
            name: component_status(ready) for name, ready in zip(names, answers, strict=True)
        }
        return PlatformStatus(overall_status(components), components, self._wall_clock())

    async def _ready(self, base_url: str) -> bool:
        try:
            response = await self._client.get(base_url + "/health/ready", timeout=self._timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
