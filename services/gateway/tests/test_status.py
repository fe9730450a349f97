from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.gateway.routing import Upstream
from tripline.gateway.status import (
    CRITICAL,
    PlatformStatus,
    Status,
    StatusProbe,
    component_status,
    overall_status,
)

ALL_OK: dict[Upstream, Status] = {name: "ok" for name in Upstream}


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ([True], "ok"),
        ([True, True], "ok"),
        ([False], "down"),
        ([False, False], "down"),
        ([True, False], "degraded"),
        ([False, True], "degraded"),
        ([True, True, False], "degraded"),
    ],
)
def test_component_status(ready: list[bool], expected: Status) -> None:
    assert component_status(ready) == expected


@given(st.lists(st.booleans(), min_size=1, max_size=10))
def test_component_status_is_ok_down_or_degraded_by_count(ready: list[bool]) -> None:
    expected = "ok" if all(ready) else "down" if not any(ready) else "degraded"
    assert component_status(ready) == expected


def test_critical_upstreams_are_core_and_tracking() -> None:
    assert frozenset({Upstream.CORE, Upstream.TRACKING}) == CRITICAL


def test_all_ok_is_ok() -> None:
    assert overall_status(ALL_OK) == "ok"


@pytest.mark.parametrize("critical", [Upstream.CORE, Upstream.TRACKING])
def test_a_critical_upstream_without_a_ready_replica_is_down(critical: Upstream) -> None:
    assert overall_status({**ALL_OK, critical: "down"}) == "down"


@pytest.mark.parametrize("other", [Upstream.UPLOAD, Upstream.MONITOR])
def test_a_non_critical_upstream_down_is_degraded(other: Upstream) -> None:
    assert overall_status({**ALL_OK, other: "down"}) == "degraded"


def test_one_of_two_tracking_replicas_down_is_degraded() -> None:
    tracking = component_status([True, False])
    assert overall_status({**ALL_OK, Upstream.TRACKING: tracking}) == "degraded"


def test_everything_non_critical_down_is_still_only_degraded() -> None:
    states = {**ALL_OK, Upstream.UPLOAD: "down", Upstream.MONITOR: "down"}
    assert overall_status(states) == "degraded"


def test_critical_down_wins_over_degraded() -> None:
    states = {**ALL_OK, Upstream.UPLOAD: "degraded", Upstream.CORE: "down"}
    assert overall_status(states) == "down"


@given(
    st.fixed_dictionaries({name: st.sampled_from(["ok", "degraded", "down"]) for name in Upstream})
)
def test_overall_status_rules(states: dict[Upstream, Status]) -> None:
    if any(states[name] == "down" for name in CRITICAL):
        expected = "down"
    elif all(state == "ok" for state in states.values()):
        expected = "ok"
    else:
        expected = "degraded"
    assert overall_status(states) == expected


def test_platform_status_as_dict_uses_upstream_names() -> None:
    status = PlatformStatus("degraded", {Upstream.CORE: "ok", Upstream.UPLOAD: "down"}, 12.5)
    assert status.as_dict() == {
        "status": "degraded",
        "components": {"core": "ok", "upload": "down"},
        "checked_at": 12.5,
    }


# StatusProbe over a MockTransport: hosts answer /health/ready with a status or an error.

UPSTREAMS: dict[Upstream, Sequence[str]] = {
    Upstream.CORE: ["http://core"],
    Upstream.UPLOAD: ["http://upload"],
    Upstream.TRACKING: ["http://tracking-1", "http://tracking-2"],
    Upstream.MONITOR: ["http://monitor"],
}


class Replicas:
    def __init__(self, answers: dict[str, int | Exception] | None = None) -> None:
        self.answers = answers or {}
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.url.host}{request.url.path}")
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
            timeout_s=1.0,
            cache_s=cache_s,
            clock=clock,
            wall_clock=lambda: 1234.0,
        )

    yield make
    for client in clients:
        await client.aclose()


async def test_every_replica_is_asked_for_readiness(probe: MakeProbe) -> None:
    replicas = Replicas()
    status = await probe(replicas, FakeClock()).status()

    assert sorted(replicas.paths) == sorted(
        f"{url.removeprefix('http://')}/health/ready" for urls in UPSTREAMS.values() for url in urls
    )
    assert status.status == "ok"
    assert status.components == {name: "ok" for name in UPSTREAMS}
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
        Upstream.CORE: "ok",
        Upstream.UPLOAD: "down",
        Upstream.TRACKING: "degraded",
        Upstream.MONITOR: "down",
    }
    assert status.status == "degraded"


@pytest.mark.parametrize("answer", [500, 503, 404, 204, httpx.ConnectError("refused")])
async def test_only_200_from_core_counts_as_ready(
    probe: MakeProbe, answer: int | Exception
) -> None:
    status = await probe(Replicas({"core": answer}), FakeClock()).status()
    assert status.components[Upstream.CORE] == "down"
    assert status.status == "down"


async def test_both_tracking_replicas_down_is_down(probe: MakeProbe) -> None:
    replicas = Replicas({"tracking-1": 503, "tracking-2": httpx.ConnectError("refused")})
    status = await probe(replicas, FakeClock()).status()
    assert status.components[Upstream.TRACKING] == "down"
    assert status.status == "down"


async def test_the_answer_is_cached_within_cache_s(probe: MakeProbe) -> None:
    replicas, clock = Replicas(), FakeClock()
    status_probe = probe(replicas, clock, cache_s=2.0)

    first = await status_probe.status()
    calls = len(replicas.paths)
    clock.now += 1.999
    replicas.answers["core"] = 503
    second = await status_probe.status()

    assert calls == 5
    assert len(replicas.paths) == calls
    assert second is first
    assert second.status == "ok"


async def test_the_answer_is_probed_again_once_cache_s_has_passed(probe: MakeProbe) -> None:
    replicas, clock = Replicas(), FakeClock()
    status_probe = probe(replicas, clock, cache_s=2.0)

    await status_probe.status()
    clock.now += 2.0
    replicas.answers["core"] = 503
    again = await status_probe.status()

    assert len(replicas.paths) == 10
    assert again.status == "down"

    clock.now += 1.0
    assert await status_probe.status() is again
    assert len(replicas.paths) == 10


async def test_a_zero_cache_probes_every_time(probe: MakeProbe) -> None:
    replicas = Replicas()
    status_probe = probe(replicas, FakeClock(), cache_s=0)
    await status_probe.status()
    await status_probe.status()
    assert len(replicas.paths) == 10


async def test_concurrent_callers_share_one_probe(probe: MakeProbe) -> None:
    replicas = Replicas()
    status_probe = probe(replicas, FakeClock(), cache_s=2.0)
    results = await asyncio.gather(*(status_probe.status() for _ in range(4)))
    assert len(replicas.paths) == 5
    assert all(result is results[0] for result in results)
