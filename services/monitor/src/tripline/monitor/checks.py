"""The monitor's view of the platform's parts: each dependency and each service replica.

Dependencies are checked with the common :class:`~tripline.common.health.Health` (concurrent,
each bounded by the check timeout, a hung one never stacked up); this module remembers when
each last answered and what its last error was, and asks every replica for its readiness.

The queues are checked per queue: each needs at least one live consumer, a worker whose
heartbeat key has not expired (:mod:`tripline.common.queue_stats`). Reading that is two Redis
round trips per look, and a SIGKILLed worker's key is gone within ``HEARTBEAT_TTL_S`` (2 s), so
the look after that reports it: within two health intervals at the default 2 s. A broadcast
ping (what this replaced) passed when any one worker answered, and ``inspect()`` would cost
every worker a reply and every look the whole reply timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from tripline.common.health import CheckResult
from tripline.common.platform import Status, platform_status, service_status
from tripline.monitor.queues import Consumers, QueueReader, QueueStatus
from tripline.monitor.targets import Target, by_service

ReplicaState = Literal["ready", "unready", "draining", "unreachable"]


class QueuesUnconsumed(Exception):
    """At least one queue has no live consumer."""


class ConsumerCheck:
    """The queues' probe: every queue has at least one live consumer.

    Raises :class:`QueuesUnconsumed` naming the queues nobody consumes, or the Redis error when
    the heartbeats cannot be read. ``latest`` is what the latest call read (None while a call
    runs or after one that could not read), for the report's detail.
    """

    def __init__(self, reader: QueueReader) -> None:
        self._reader = reader
        self.latest: Consumers | None = None

    async def __call__(self) -> None:
        self.latest = None
        consumers = await self._reader.consumers()
        self.latest = consumers
        missing = consumers.unconsumed()
        if missing:
            raise QueuesUnconsumed(f"no live consumer for {', '.join(missing)}")


def queues_state(consumers: Consumers | None) -> Status:
    """``ok`` when every queue has a live consumer, ``degraded`` when some queue has none,
    ``down`` when none has (no work moves) or nothing could be read."""
    if consumers is None:
        return "down"
    missing = consumers.unconsumed()
    if not missing:
        return "ok"
    return "down" if len(missing) == len(consumers.queues) else "degraded"


def queues_detail(consumers: Consumers | None, status: QueueStatus | None) -> dict[str, Any]:
    """The queues dependency's detail: live workers, consumers per queue and the queues with
    none (from this look), and the total depth (from the latest queue status, when read)."""
    detail: dict[str, Any] = {}
    if consumers is not None:
        detail["workers"] = consumers.workers
        detail["consumers"] = {name: seen.workers for name, seen in consumers.queues.items()}
        detail["unconsumed"] = consumers.unconsumed()
    if status is not None:
        detail["depth"] = sum(queue.depth for queue in status.queues)
    return detail


@dataclass
class DependencyRecord:
    """What is known of one dependency: its latest check and its history of answers.

    ``degraded`` marks a failed check of a dependency that still partly works (some queues
    consumed, others not); it shows as that state instead of ``down``.
    """

    ok: bool = False
    checked: bool = False
    degraded: bool = False
    latency_ms: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.ok:
            return "ok"
        if not self.checked:
            return "unknown"
        return "degraded" if self.degraded else "down"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "latency_ms": self.latency_ms,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_ok_at": self.last_ok_at,
            "detail": self.detail,
        }


class DependencyBook:
    """Keeps a :class:`DependencyRecord` per dependency from successive check results."""

    def __init__(self, names: Iterable[str]) -> None:
        self.records = {name: DependencyRecord() for name in names}

    def update(self, results: Iterable[CheckResult], now: float) -> None:
        for result in results:
            record = self.records.setdefault(result.name, DependencyRecord())
            record.ok = result.ok
            record.checked = True
            record.degraded = False
            record.latency_ms = round(result.latency_ms, 2)
            if result.ok:
                record.last_ok_at = now
            else:
                record.last_error = result.error
                record.last_error_at = now

    def answered(self) -> dict[str, bool]:
        """Dependency → answered its latest check (unchecked ones count as answering)."""
        return {name: record.ok or not record.checked for name, record in self.records.items()}


@dataclass(frozen=True)
class ReplicaHealth:
    target: Target
    state: ReplicaState
    latency_ms: float
    error: str | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.target.url,
            "state": self.state,
            "latency_ms": round(self.latency_ms, 2),
            "last_error": self.error,
            "checks": dict(self.checks),
        }


def replica_from_answer(
    target: Target, status_code: int, body: Any, latency_ms: float
) -> ReplicaHealth:
    """Read one ``/health/ready`` answer: 200 ready, 503 draining or unready, else broken."""
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict):
        checks = {}
    if status_code == 200:
        return ReplicaHealth(target, "ready", latency_ms, None, checks)
    if status_code == 503 and isinstance(body, dict):
        if body.get("status") == "draining":
            return ReplicaHealth(target, "draining", latency_ms, "draining", checks)
        failing = sorted(
            name
            for name, check in checks.items()
            if isinstance(check, dict) and check.get("required") and not check.get("ok")
        )
        error = f"unready: {', '.join(failing)} failing" if failing else "unready"
        return ReplicaHealth(target, "unready", latency_ms, error, checks)
    return ReplicaHealth(target, "unreachable", latency_ms, f"answered HTTP {status_code}")


class ReplicaProber:
    """Asks every replica's ``/health/ready`` concurrently, each within ``timeout_s``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        targets: Sequence[Target],
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._client = client
        self._targets = tuple(targets)
        self._timeout_s = timeout_s
        self._clock = clock

    async def check(self) -> list[ReplicaHealth]:
        return list(await asyncio.gather(*(self._ask(target) for target in self._targets)))

    async def _ask(self, target: Target) -> ReplicaHealth:
        started = self._clock()
        try:
            response = await asyncio.wait_for(
                self._client.get(f"{target.url}/health/ready"), timeout=self._timeout_s
            )
            body = response.json()
        except TimeoutError:
            return ReplicaHealth(
                target,
                "unreachable",
                self._elapsed_ms(started),
                f"no answer in {self._timeout_s:g}s",
            )
        except (httpx.HTTPError, ValueError) as exc:
            return ReplicaHealth(
                target,
                "unreachable",
                self._elapsed_ms(started),
                f"{type(exc).__name__}: {exc}"[:300],
            )
        return replica_from_answer(target, response.status_code, body, self._elapsed_ms(started))

    def _elapsed_ms(self, started: float) -> float:
        return (self._clock() - started) * 1000


@dataclass(frozen=True)
class HealthReport:
    """One complete look at the platform; what ``/api/admin/health`` and ``/health`` show."""

    status: Status
    checked_at: float
    dependencies: Mapping[str, dict[str, Any]]
    services: Mapping[str, Status]
    replicas: Mapping[str, tuple[ReplicaHealth, ...]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "dependencies": dict(self.dependencies),
            "services": {
                name: {
                    "state": self.services[name],
                    "replicas": [replica.as_dict() for replica in replicas],
                }
                for name, replicas in self.replicas.items()
            },
        }

    def summary(self) -> dict[str, Any]:
        """The short form the gateway relays on ``GET /health``."""
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "components": dict(self.services),
            "dependencies": {name: body["state"] for name, body in self.dependencies.items()},
        }


def build_report(
    book: DependencyBook, replicas: Sequence[ReplicaHealth], now: float
) -> HealthReport:
    """Combine the latest dependency checks and replica answers with the platform rule."""
    grouped = by_service(replica.target for replica in replicas)
    health_of = {replica.target: replica for replica in replicas}
    per_service = {
        name: tuple(health_of[target] for target in targets) for name, targets in grouped.items()
    }
    services: dict[str, Status] = {
        name: service_status([replica.ready for replica in members])
        for name, members in per_service.items()
    }
    return HealthReport(
        status=platform_status(services, book.answered()),
        checked_at=now,
        dependencies={name: record.as_dict() for name, record in book.records.items()},
        services=services,
        replicas=per_service,
    )
