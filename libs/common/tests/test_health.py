from __future__ import annotations

import asyncio
from typing import Any

from tripline.common.health import CheckResult, Health
from tripline.devstack.fakes import StepClock


async def ok() -> None:
    return None


async def broken() -> None:
    raise ConnectionError("connection refused")


async def hangs() -> None:
    await asyncio.Event().wait()


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


async def test_no_checks_means_ready() -> None:
    assert await Health().readiness() == (True, {"status": "ready", "checks": {}})


async def test_passing_required_checks_are_ready() -> None:
    health = Health(clock=StepClock(0.25))
    health.add("redis", ok)
    ready, body = await health.readiness()
    assert ready
    assert body == {
        "status": "ready",
        "checks": {"redis": {"ok": True, "required": True, "latency_ms": 250.0}},
    }


async def test_failing_required_check_makes_the_service_unready() -> None:
    health = Health()
    health.add("redis", ok)
    health.add("mongo", broken)
    ready, body = await health.readiness()
    assert not ready
    assert body["status"] == "unready"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["mongo"]["ok"] is False
    assert body["checks"]["mongo"]["error"] == "ConnectionError: connection refused"


async def test_failing_optional_check_is_reported_but_keeps_the_service_ready() -> None:
    health = Health()
    health.add("redis", ok)
    health.add("mongo", broken, required=False)
    ready, body = await health.readiness()
    assert ready
    assert body["status"] == "ready"
    mongo = body["checks"]["mongo"]
    assert (mongo["ok"], mongo["required"]) == (False, False)
    assert mongo["error"] == "ConnectionError: connection refused"


async def test_a_hanging_probe_fails_with_a_timeout_message() -> None:
    health = Health(timeout_s=0.05)
    health.add("s3", hangs)
    health.add("redis", ok)
    results = by_name(await health.check())
    assert not results["s3"].ok
    assert results["s3"].error == "no answer within 0.05s"
    assert results["redis"].ok
    assert (await health.readiness())[0] is False


async def test_probes_run_concurrently_under_one_timeout() -> None:
    health = Health(timeout_s=0.05)
    started: list[str] = []

    def probe(name: str) -> Any:
        async def run() -> None:
            started.append(name)
            await asyncio.Event().wait()

        return run

    for name in ("a", "b", "c"):
        health.add(name, probe(name))
    results = await health.check()
    assert sorted(started) == ["a", "b", "c"]
    assert [result.ok for result in results] == [False, False, False]


async def test_long_error_messages_are_truncated() -> None:
    async def loud() -> None:
        raise RuntimeError("x" * 1000)

    health = Health()
    health.add("loud", loud)
    [result] = await health.check()
    assert result.error is not None
    assert len(result.error) == 300
    assert result.error.startswith("RuntimeError: xxx")


async def test_a_probe_failing_before_awaiting_is_caught() -> None:
    def not_a_coroutine() -> Any:
        raise OSError("boom")

    health = Health()
    health.add("sync", not_a_coroutine)
    [result] = await health.check()
    assert not result.ok
    assert result.error == "OSError: boom"


async def test_re_adding_a_name_replaces_the_probe() -> None:
    health = Health()
    health.add("redis", broken)
    health.add("redis", ok, required=False)
    [result] = await health.check()
    assert result.ok
    assert not result.required


async def test_draining_is_not_ready_and_skips_checks() -> None:
    calls: list[int] = []

    async def counted() -> None:
        calls.append(1)

    health = Health()
    health.add("redis", counted)
    health.start_draining()
    assert await health.readiness() == (False, {"status": "draining", "checks": {}})
    assert calls == []


def test_check_result_as_dict_rounds_latency() -> None:
    assert CheckResult("x", True, True, 1.23456).as_dict() == {
        "ok": True,
        "required": True,
        "latency_ms": 1.23,
    }


async def test_health_endpoints_through_service_app(build_app: Any, serve: Any) -> None:
    state = {"up": True}

    async def toggled() -> None:
        if not state["up"]:
            raise ConnectionError("down")

    health = Health(timeout_s=0.05)
    health.add("redis", toggled)
    health.add("search", hangs, required=False)
    app = build_app(health=health)
    async with serve(app) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        state["up"] = False
        unready = await client.get("/health/ready")
        state["up"] = True
        health.start_draining()
        draining = await client.get("/health/ready")
        still_live = await client.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["search"]["error"] == "no answer within 0.05s"
    assert ready.headers["cache-control"] == "no-store"
    assert unready.status_code == 503
    assert unready.json()["checks"]["redis"]["error"] == "ConnectionError: down"
    assert unready.headers["cache-control"] == "no-store"
    assert draining.status_code == 503
    assert draining.json()["status"] == "draining"
    assert still_live.status_code == 200


async def test_a_hanging_probe_is_not_started_again_while_it_hangs() -> None:
    calls = 0
    release = asyncio.Event()

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    health = Health(timeout_s=0.02)
    health.add("s3", hangs)
    first = await health.check()
    second = await health.check()
    assert calls == 1
    assert [first[0].ok, second[0].ok] == [False, False]
    release.set()
    third = await health.check()
    assert third[0].ok
    assert calls in (1, 2), "the released probe is reused or, once done, run afresh"
