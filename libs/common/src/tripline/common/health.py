"""Liveness, readiness and draining.

``/health/live`` answers while the process can serve at all. ``/health/ready`` runs this
service's own dependency checks concurrently, each under a timeout: the service is ready when
every *required* check passes; optional checks are reported but never make it unready (tracking
keeps serving live locations while MongoDB is away). After SIGTERM the service reports
``draining`` so load balancers stop sending new work before it exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    required: bool
    latency_ms: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": self.ok,
            "required": self.required,
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class Health:
    """The readiness checks of one service and its draining flag.

    Probes raise on failure; any exception (or the timeout) marks the check failed. The caller
    registers probes in its lifespan, once its clients exist.
    """

    timeout_s: float = 1.5
    clock: Callable[[], float] = time.perf_counter
    _draining: asyncio.Event = field(default_factory=asyncio.Event)
    _probes: dict[str, tuple[Probe, bool]] = field(default_factory=dict)
    _in_flight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _last: dict[str, CheckResult] = field(default_factory=dict)

    def add(self, name: str, probe: Probe, *, required: bool = True) -> None:
        self._probes[name] = (probe, required)

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def start_draining(self) -> None:
        """Report ``draining`` from now on; call it on the event loop's thread."""
        self._draining.set()

    async def wait_draining(self) -> None:
        """Return once draining has started."""
        await self._draining.wait()

    def last_results(self) -> list[CheckResult]:
        """The outcome of each probe's latest check (none before the first check)."""
        return list(self._last.values())

    async def check(self) -> list[CheckResult]:
        """Run every probe concurrently, each bounded by ``timeout_s``; never raises.

        A probe still running from an earlier check is awaited again rather than started anew.
        """
        return list(
            await asyncio.gather(
                *(self._run(name, probe, req) for name, (probe, req) in self._probes.items())
            )
        )

    async def _run(self, name: str, probe: Probe, required: bool) -> CheckResult:
        # One probe of each kind at a time: a dependency that hangs must not collect a new
        # stuck call (and, for S3, a stuck thread) every time readiness is asked.
        task = self._in_flight.get(name)
        if task is None or task.done():
            task = asyncio.ensure_future(_call(probe))
            # The outcome is read below, or by a later check; mark it read either way.
            task.add_done_callback(_retrieve)
            self._in_flight[name] = task
        started = self.clock()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.timeout_s)
        except TimeoutError:
            error: str | None = f"no answer within {self.timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 (a probe may fail in any way; report it)
            error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            error = None
        latency_ms = (self.clock() - started) * 1000
        result = CheckResult(name, error is None, required, latency_ms, error)
        self._last[name] = result
        return result

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return ``(ready, body)`` for ``/health/ready``."""
        if self.draining:
            return False, {"status": "draining", "checks": {}}
        results = await self.check()
        ready = all(result.ok for result in results if result.required)
        return ready, {
            "status": "ready" if ready else "unready",
            "checks": {result.name: result.as_dict() for result in results},
        }


async def _call(probe: Probe) -> None:
    await probe()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class DependencyCollector(Collector):
    """``tripline_dependency_up`` and ``tripline_dependency_check_seconds`` per dependency, from
    the latest readiness check (Kubernetes asks every few seconds; so does the monitor)."""

    def __init__(self, health: Health, service: str) -> None:
        self._health = health
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["service", "dependency"]
        up = GaugeMetricFamily(
            "tripline_dependency_up",
            "1 when the dependency answered this service's latest readiness check.",
            labels=labels,
        )
        latency = GaugeMetricFamily(
            "tripline_dependency_check_seconds",
            "How long the dependency took to answer the latest readiness check.",
            labels=labels,
        )
        for result in self._health.last_results():
            up.add_metric([self._service, result.name], 1.0 if result.ok else 0.0)
            latency.add_metric([self._service, result.name], result.latency_ms / 1000)
        yield up
        yield latency


def live_endpoint(_request: Request) -> Response:
    return JSONResponse({"status": "live"})


def ready_endpoint(health: Health) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_request: Request) -> Response:
        ready, body = await health.readiness()
        return JSONResponse(
            body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"}
        )

    return endpoint
