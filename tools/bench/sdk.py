"""What the client SDK costs an app, against bare httpx in the same run: make bench-sdk.

Usage: sdk.py [CALLS]   (default 2000)

A small JSON server runs as its own process (``sdk.py serve PORT``), so the figures are the
client's alone: CPU time per call in this process (``time.process_time``) and calls per second,
one call at a time, as an app makes them. Three pairs:

- a read: bare ``httpx.AsyncClient.get`` vs ``Tripline.get_trip`` (retry logic, error mapping);
- a write: bare ``httpx`` POST vs ``Tripline.create_trip`` (plus an Idempotency-Key);
- a critical action: bare POST vs ``Tripline.send_sos``, which writes the action to SQLite
  (``synchronous=FULL``) before sending and records its outcome after.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from tripline.devstack.ports import free_port
from tripline_client import ClientConfig, Tripline

TRIP = {"id": "t1", "status": "requested", "rider_id": "r1", "driver_id": None}


def serve(port: int) -> None:
    """Answer every request with a small JSON body, as fast as uvicorn allows."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def answer(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(TRIP, status_code=200 if request.method == "GET" else 201)

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http="httptools")


async def measure(calls: int, call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """CPU microseconds per call in this process, and calls per second (after a warm-up)."""
    for _ in range(50):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, calls / wall


async def bench(base_url: str, calls: int) -> None:
    body = {"origin": {"lat": 52.52, "lng": 13.405}, "destination": {"lat": 52.53, "lng": 13.42}}
    headers = {"authorization": "Bearer bench"}
    with tempfile.TemporaryDirectory() as data_dir:
        async with (
            httpx.AsyncClient(base_url=base_url, headers=headers) as bare,
            Tripline(base_url, "bench", Path(data_dir), config=ClientConfig()) as sdk,
        ):
            pairs: list[
                tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]
            ]
            pairs = [
                ("read", lambda: bare.get("/api/trips/t1"), lambda: sdk.get_trip("t1")),
                (
                    "write",
                    lambda: bare.post("/api/trips", json=body),
                    lambda: sdk.create_trip(origin=(52.52, 13.405), destination=(52.53, 13.42)),
                ),
                (
                    "critical action",
                    lambda: bare.post("/api/trips/t1/sos", json={"lat": 52.5, "lng": 13.4}),
                    lambda: sdk.send_sos("t1", lat=52.5, lng=13.4),
                ),
            ]
            print(f"{calls} calls each, one at a time; CPU µs per call in the client process")
            for name, baseline, ours in pairs:
                bare_cpu, bare_rate = await measure(calls, baseline)
                sdk_cpu, sdk_rate = await measure(calls, ours)
                print(
                    f"{name:16} httpx {bare_cpu:7.0f} µs {bare_rate:7.0f}/s   "
                    f"sdk {sdk_cpu:7.0f} µs {sdk_rate:7.0f}/s   "
                    f"cpu x{sdk_cpu / bare_cpu:.2f}  rate x{sdk_rate / bare_rate:.2f}"
                )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
        return
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "serve", str(port)])  # noqa: S603 -- our own script
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/ready", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        asyncio.run(bench(base_url, calls))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
