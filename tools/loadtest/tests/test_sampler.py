"""Platform samples: the queue fields and the documents rate, and ``Sampler.sample`` against a
real local HTTP server that serves the gateway's metrics (its real metric objects) and the admin
queue status (the monitor's real status type), with a clock of the test's own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tripline.common.metrics import HttpMetrics, metrics_endpoint
from tripline.common.queues import Queue
from tripline.devstack.harness import serve_app
from tripline.devstack.ports import free_port
from tripline.gateway.metrics import GatewayMetrics
from tripline.gateway.shedding import Priority
from tripline.loadtest.sampler import Sampler, Sources, documents_per_s, queue_fields
from tripline.monitor.queues import QueueState, QueueStatus

ADMIN_TOKEN = "admin-token-of-the-run"


def clock(*readings: float) -> Callable[[], float]:
    """A clock that reads ``readings`` in turn."""
    times: Iterator[float] = iter(readings)
    return lambda: next(times)


def queue(name: str, processed: int, depth: int = 0, in_flight: int | None = 0) -> QueueState:
    return QueueState(name, depth, in_flight, 0.0, processed, 0, 0, 0, None, 1)


@dataclass
class Platform:
    """What the local server answers: the gateway's registry and the queues' counters."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    processed: int = 0
    depth: int = 0
    admin_calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = HttpMetrics(self.registry, "gateway")
        self.gateway = GatewayMetrics(self.registry)

    def status(self) -> dict[str, Any]:
        queues = (
            queue(Queue.DOCUMENTS, self.processed, self.depth, None),
            queue(Queue.PAYMENTS, 7, 1, 1),
        )
        return QueueStatus(1_700_000_000.0, queues, (), 0).as_dict()

    def app(self) -> Starlette:
        async def queue_status(request: Request) -> Response:
            self.admin_calls.append(request.headers.get("authorization", ""))
            if request.headers.get("authorization") != f"Bearer {ADMIN_TOKEN}":
                return JSONResponse({"title": "Unauthorized"}, status_code=401)
            return JSONResponse(self.status())

        async def login_page(_request: Request) -> Response:
            return HTMLResponse("<html><body>Sign in to continue</body></html>")

        async def broken(_request: Request) -> Response:
            return PlainTextResponse("upstream failed", status_code=500)

        async def a_list(_request: Request) -> Response:
            return JSONResponse(["not", "a", "status"])

        return Starlette(
            routes=[
                Route("/metrics", metrics_endpoint(self.registry)),
                Route("/api/admin/queues/status", queue_status),
                Route("/login", login_page),
                Route("/html/api/admin/queues/status", login_page),
                Route("/broken", broken),
                Route("/broken/api/admin/queues/status", broken),
                Route("/odd/api/admin/queues/status", a_list),
            ]
        )


@pytest.fixture
def platform() -> Platform:
    return Platform()


@pytest.fixture
async def url(platform: Platform) -> AsyncIterator[str]:
    async with serve_app(platform.app()) as served:
        yield served


# Queue fields and the documents rate


def test_queue_fields_keep_depth_in_flight_and_processed_per_queue() -> None:
    status = QueueStatus(
        0.0,
        (queue("documents", 40, depth=12, in_flight=None), queue("payments", 3, 2, 1)),
        (),
        0,
    ).as_dict()
    assert queue_fields(status) == {
        "documents": {"depth": 12, "in_flight": 0, "processed_total": 40},
        "payments": {"depth": 2, "in_flight": 1, "processed_total": 3},
    }


def test_queue_fields_skip_entries_without_a_name_and_default_to_zero() -> None:
    status = {"queues": [{"depth": 3}, "documents", {"name": "system"}]}
    assert queue_fields(status) == {
        "system": {"depth": 0, "in_flight": 0, "processed_total": 0},
    }
    assert queue_fields({}) == {}


def docs(t: float, processed: float) -> dict[str, Any]:
    return {"t": t, "queues": {"documents": {"processed_total": processed}}}


def test_documents_per_s_needs_a_previous_sample() -> None:
    assert documents_per_s(None, docs(10.0, 5)) is None


def test_documents_per_s_is_the_rate_between_two_samples() -> None:
    assert documents_per_s(docs(10.0, 5), docs(14.0, 15)) == 2.5
    assert documents_per_s(docs(10.0, 5), docs(13.0, 6)) == 0.333


def test_documents_per_s_after_a_restart_is_zero_not_negative() -> None:
    assert documents_per_s(docs(10.0, 500), docs(12.0, 3)) == 0.0


@pytest.mark.parametrize(
    ("previous", "current"),
    [
        ({"t": 10.0, "queues": None}, docs(12.0, 3)),
        (docs(10.0, 1), {"t": 12.0, "queues": None}),
        (docs(10.0, 1), {"t": 12.0, "queues": {"payments": {"processed_total": 9}}}),
        (docs(10.0, 1), docs(10.0, 4)),
    ],
    ids=["previous-missing", "current-missing", "no-documents-queue", "no-time-passed"],
)
def test_documents_per_s_without_two_readings_is_none(
    previous: dict[str, Any], current: dict[str, Any]
) -> None:
    assert documents_per_s(previous, current) is None


# Sampler.sample


async def test_a_sample_without_sources_holds_only_the_time_and_the_rate(tmp_path: Path) -> None:
    sampler = Sampler(Sources(), tmp_path / "platform.jsonl", clock=clock(1234.56789))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert sample == {"t": 1234.568, "documents_per_s": None}


async def test_a_sample_reads_every_source_of_a_real_server(
    url: str, platform: Platform, tmp_path: Path
) -> None:
    platform.http.record("GET", "/api/trips/{trip_id}", 200, 0.02)
    platform.http.record("POST", "/api/analytics/events", 503, 0.001)
    platform.gateway.shed(Priority.LOW)
    platform.gateway.shedding_level.set(1)
    platform.processed, platform.depth = 40, 6
    sources = Sources(
        pids={"tests": os.getpid()},
        gateway_metrics_url=f"{url}/metrics",
        admin_base_url=url,
        admin_token=ADMIN_TOKEN,
    )
    sampler = Sampler(sources, tmp_path / "platform.jsonl", clock=clock(100.0, 104.0))
    async with httpx.AsyncClient() as client:
        first = await sampler.sample(client)
        sampler.samples.append(first)
        platform.processed, platform.depth = 50, 2
        second = await sampler.sample(client)
    assert first["t"] == 100.0
    assert set(first) == {"t", "processes", "gateway", "queues", "documents_per_s"}
    assert set(first["processes"]) == {"tests"}
    assert first["processes"]["tests"]["rss_bytes"] > 0
    assert first["gateway"]["shedding_level"] == 1.0
    assert first["gateway"]["admission"]["low/shed"] == 1.0
    assert first["gateway"]["responses"]["read"] == {"200": 1.0}
    assert first["gateway"]["responses"]["low"] == {"503": 1.0}
    assert first["queues"] == {
        "documents": {"depth": 6, "in_flight": 0, "processed_total": 40},
        "payments": {"depth": 1, "in_flight": 1, "processed_total": 7},
    }
    assert first["documents_per_s"] is None
    # Ten more documents in four seconds.
    assert second["queues"]["documents"]["processed_total"] == 50
    assert second["documents_per_s"] == 2.5
    assert platform.admin_calls == [f"Bearer {ADMIN_TOKEN}"] * 2


async def test_the_admin_source_needs_a_token(url: str, platform: Platform, tmp_path: Path) -> None:
    sampler = Sampler(Sources(admin_base_url=url), tmp_path / "p.jsonl", clock=clock(1.0))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert "queues" not in sample
    assert platform.admin_calls == []


@pytest.mark.parametrize("path", ["/broken", "refused"])
async def test_a_failing_gateway_url_is_recorded_as_missing(
    url: str, path: str, tmp_path: Path
) -> None:
    metrics_url = f"http://127.0.0.1:{free_port()}/metrics" if path == "refused" else url + path
    sources = Sources(gateway_metrics_url=metrics_url, admin_base_url=url, admin_token=ADMIN_TOKEN)
    sampler = Sampler(sources, tmp_path / "p.jsonl", clock=clock(5.0))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert sample["gateway"] is None
    # The other sources are still read.
    assert sample["queues"]["documents"]["processed_total"] == 0


@pytest.mark.parametrize("base", ["/broken", "/html"])
async def test_a_failing_admin_api_is_recorded_as_missing(
    url: str, base: str, tmp_path: Path
) -> None:
    sources = Sources(
        gateway_metrics_url=f"{url}/metrics", admin_base_url=url + base, admin_token=ADMIN_TOKEN
    )
    sampler = Sampler(sources, tmp_path / "p.jsonl", clock=clock(5.0))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert sample["queues"] is None
    assert sample["gateway"] is not None
    assert sample["documents_per_s"] is None


async def test_a_wrong_admin_token_is_recorded_as_missing(url: str, tmp_path: Path) -> None:
    sources = Sources(admin_base_url=url, admin_token="not-the-token")
    sampler = Sampler(sources, tmp_path / "p.jsonl", clock=clock(5.0))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert sample["queues"] is None


async def test_a_gateway_url_answering_a_page_instead_of_metrics_is_recorded_as_missing(
    url: str, tmp_path: Path
) -> None:
    # A 200 that is not Prometheus text (a login page, a wrong URL) is a failed source too.
    sources = Sources(gateway_metrics_url=f"{url}/login")
    sampler = Sampler(sources, tmp_path / "p.jsonl", clock=clock(5.0))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert sample["gateway"] is None


async def test_an_admin_api_answering_json_of_another_shape_is_recorded_as_missing(
    url: str, tmp_path: Path
) -> None:
    sources = Sources(admin_base_url=f"{url}/odd", admin_token=ADMIN_TOKEN)
    sampler = Sampler(sources, tmp_path / "p.jsonl", clock=clock(5.0))
    async with httpx.AsyncClient() as client:
        sample = await sampler.sample(client)
    assert sample["queues"] is None
