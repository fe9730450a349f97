from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest

from tripline.gateway.routing import Upstream
from tripline.gateway.status import PlatformStatus, StatusProbe, from_monitor

MONITOR_BODY: dict[str, Any] = {
    "status": "degraded",
    "checked_at": 1230.0,
    "components": {"core": "ok", "tracking": "degraded"},
    "dependencies": {"mongodb": "ok", "redis": "down"},
}


def test_a_fresh_monitor_look_is_relayed() -> None:
    status = from_monitor(MONITOR_BODY, now=1234.0, max_age_s=15)
    assert status == PlatformStatus(
        "degraded",
        {"core": "ok", "tracking": "degraded", "monitor": "ok"},
        1230.0,
        {"mongodb": "ok", "redis": "down"},
        "monitor",
    )


def test_a_stale_monitor_look_is_not_believed() -> None:
    assert from_monitor(MONITOR_BODY, now=1230.0 + 16, max_age_s=15) is None


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {**MONITOR_BODY, "status": "fine"},
        {**MONITOR_BODY, "components": ["core"]},
        {**MONITOR_BODY, "components": {"core": "sort of"}},
        {**MONITOR_BODY, "checked_at": "now"},
        {**MONITOR_BODY, "dependencies": "all"},
    ],
)
def test_anything_else_from_the_monitor_is_ignored(body: object) -> None:
    assert from_monitor(body, now=1234.0, max_age_s=15) is None


def test_platform_status_as_dict() -> None:
    status = PlatformStatus("degraded", {"core": "ok", "upload": "down"}, 12.5)
    assert status.as_dict() == {
        "status": "degraded",
        "components": {"core": "ok", "upload": "down"},
        "dependencies": {},
        "checked_at": 12.5,
        "source": "gateway",
    }


# StatusProbe over a MockTransport: the monitor answers /internal/status, the replicas
# /health/ready, each with a status, a body or an error.

UPSTREAMS: dict[Upstream, Sequence[str]] = {
    Upstream.CORE: ["http://core"],
    Upstream.UPLOAD: ["http://upload"],
    Upstream.TRACKING: ["http://tracking-1", "http://tracking-2"],
    Upstream.MONITOR: ["http://monitor"],
}


class Replicas:
    def __init__(
        self,
        answers: dict[str, int | Exception] | None = None,
        monitor: dict[str, Any] | Exception | None = None,
    ) -> None:
        self.answers = answers or {}
        self.monitor = monitor if monitor is not None else httpx.ConnectError("refused")
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.url.host}{request.url.path}")
        if request.url.path == "/internal/status":
            if isinstance(self.monitor, Exception):
                raise self.monitor
            return httpx.Response(200, json=self.monitor)
        answer = self.answers.get(request.url.host, 200)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"status": "whatever"})


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeProbe = Callable[..., StatusProbe]


@pytest.fixture
async def probe() -> AsyncIterator[MakeProbe]:
    clients: list[httpx.AsyncClient] = []

    def make(replicas: Replicas, clock: Callable[[], float], cache_s: float = 2.0) -> StatusProbe:
        clients.append(httpx.AsyncClient(transport=httpx.MockTransport(replicas)))
        return StatusProbe(
            clients[-1],
            UPSTREAMS,
            monitor_url="http://monitor",
            timeout_s=1.0,
            cache_s=cache_s,
            clock=clock,
            wall_clock=lambda: 1234.0,
        )

    yield make
    for client in clients:
        await client.aclose()


async def test_the_monitor_look_is_used_when_it_answers(probe: MakeProbe) -> None:
    replicas = Replicas(monitor=MONITOR_BODY)
    status = await probe(replicas, FakeClock()).status()

    assert replicas.paths == ["monitor/internal/status"]
    assert status.source == "monitor"
    assert status.status == "degraded"
    assert status.dependencies == {"mongodb": "ok", "redis": "down"}


async def test_without_the_monitor_every_replica_is_asked(probe: MakeProbe) -> None:
    replicas = Replicas()
    status = await probe(replicas, FakeClock()).status()

    assert sorted(replicas.paths) == sorted(
        [
            "monitor/internal/status",
            *(
                f"{url.removeprefix('http://')}/health/ready"
                for urls in UPSTREAMS.values()
                for url in urls
            ),
        ]
    )
    assert status.source == "gateway"
    # Every replica is ready, but nobody looked at the dependencies.
    assert status.components == {name.value: "ok" for name in UPSTREAMS}
    assert status.status == "degraded"
    assert status.checked_at == 1234.0


async def test_failing_replicas_are_reported_per_component(probe: MakeProbe) -> None:
    replicas = Replicas(
        {
            "tracking-2": httpx.ConnectError("refused"),
            "monitor": 503,
            "upload": httpx.ReadTimeout("slow"),
        }
    )
    status = await probe(replicas, FakeClock()).status()

    assert status.components == {
        "core": "ok",
        "upload": "down",
        "tracking": "degraded",
        "monitor": "down",
    }
    assert status.status == "degraded"


@pytest.mark.parametrize("answer", [500, 503, 404, 204, httpx.ConnectError("refused")])
async def test_only_200_from_core_counts_as_ready(
    probe: MakeProbe, answer: int | Exception
) -> None:
    status = await probe(Replicas({"core": answer}), FakeClock()).status()
    assert status.components["core"] == "down"
    assert status.status == "down"


async def test_tracking_without_a_ready_replica_is_degraded_not_down(probe: MakeProbe) -> None:
    replicas = Replicas({"tracking-1": 503, "tracking-2": httpx.ConnectError("refused")})
    status = await probe(replicas, FakeClock()).status()
    assert status.components["tracking"] == "down"
    assert status.status == "degraded"


async def test_the_answer_is_cached_within_cache_s(probe: MakeProbe) -> None:
    replicas, clock = Replicas(), FakeClock()
    status_probe = probe(replicas, clock, cache_s=2.0)

    first = await status_probe.status()
    calls = len(replicas.paths)
    clock.now += 1.999
    replicas.answers["core"] = 503
    second = await status_probe.status()

    assert calls == 6
    assert len(replicas.paths) == calls
    assert second is first
    assert second.status == "degraded"


async def test_the_answer_is_probed_again_once_cache_s_has_passed(probe: MakeProbe) -> None:
    replicas, clock = Replicas(), FakeClock()
    status_probe = probe(replicas, clock, cache_s=2.0)

    await status_probe.status()
    clock.now += 2.0
    replicas.answers["core"] = 503
    again = await status_probe.status()

    assert len(replicas.paths) == 12
    assert again.status == "down"

    clock.now += 1.0
    assert await status_probe.status() is again
    assert len(replicas.paths) == 12


async def test_concurrent_callers_share_one_probe(probe: MakeProbe) -> None:
    replicas = Replicas()
    status_probe = probe(replicas, FakeClock(), cache_s=2.0)
    results = await asyncio.gather(*(status_probe.status() for _ in range(4)))
    assert len(replicas.paths) == 6
    assert all(result is results[0] for result in results)
