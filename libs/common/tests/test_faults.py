from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tripline.common.faults import FaultDelay


def app_with_delay(slept: list[float]) -> FaultDelay:
    async def hello(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    inner = Starlette(
        routes=[
            Route("/api/trips", hello),
            Route("/health/ready", hello),
            Route("/metrics", hello),
        ]
    )
    return FaultDelay(inner, delay_s=0.4, sleep=sleep)


async def test_every_request_waits_the_delay_before_it_is_handled() -> None:
    slept: list[float] = []
    transport = httpx.ASGITransport(app=app_with_delay(slept))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/api/trips")
    assert answer.text == "hello"
    assert slept == [0.4]


async def test_probes_and_metrics_are_not_delayed() -> None:
    slept: list[float] = []
    transport = httpx.ASGITransport(app=app_with_delay(slept))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    assert slept == []
