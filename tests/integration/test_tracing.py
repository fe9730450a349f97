"""One upload completed through the gateway is one trace, exported over OTLP/HTTP to a real
receiver process: gateway → upload → Celery → the worker's task → its MongoDB and S3 calls.

The gateway, the upload service and a documents worker run as processes with
``OTEL_EXPORTER_OTLP_ENDPOINT`` as their only tracing setting. The broker is a Redis of the
test's own, so no other worker of the session can take the task; MongoDB (a fresh database)
and S3 are the session's. The worker runs each pool the stack uses: threads (documents) and
prefork (the rest). It keeps the SDK's 5 s batch delay and is stopped before the trace is
read, so its spans must leave as it stops: a prefork child exits without running exit hooks.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from tripline.common.auth import Role
from tripline.devstack.documents import jpeg, presign, send_to_s3, verdict
from tripline.devstack.harness import (
    Backends,
    Server,
    python_process,
    scaled,
    start_together,
    stop_together,
)
from tripline.devstack.ports import free_ports
from tripline.devstack.probes import celery_worker, http_ok
from tripline.devstack.testing import auth, fresh

pytestmark = pytest.mark.integration

Span = dict[str, Any]

# The SDK sends a batch every 5 s by default; the test would only wait longer.
EXPORT_PROMPTLY = {"OTEL_BSP_SCHEDULE_DELAY": "100"}

PROCESS_DOCUMENT = "tripline.documents.process"


@dataclass(frozen=True)
class Stack:
    gateway: httpx.AsyncClient
    upload: httpx.AsyncClient
    worker: Server


@pytest.fixture(params=["threads", "prefork"])
async def stack(
    request: pytest.FixtureRequest,
    backends: Backends,
    fresh_redis: Server,
    otlp_receiver: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    env = {
        **backends.env(),
        "REDIS_URL": redis_url,
        "MONGO_DB": fresh("tracing"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver,
    }
    upload_port, gateway_port, unused_port = free_ports(3)
    upload_url = f"http://127.0.0.1:{upload_port}"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    unused_url = f"http://127.0.0.1:{unused_port}"
    instance = fresh("documents")
    worker = python_process(
        "worker",
        "tripline.worker",
        env
        | {
            "INSTANCE_ID": instance,
            "WORKER_QUEUES": "documents",
            "WORKER_POOL": request.param,
            "WORKER_CONCURRENCY": "2",
        },
        celery_worker(redis_url, f"worker@{instance}"),
        tmp_path / "worker.log",
    )
    servers = [
        worker,
        python_process(
            "upload",
            "tripline.upload",
            env | EXPORT_PROMPTLY | {"PORT": str(upload_port), "INSTANCE_ID": fresh("upload")},
            http_ok(f"{upload_url}/health/ready"),
            tmp_path / "upload.log",
        ),
        python_process(
            "gateway",
            "tripline.gateway",
            env
            | EXPORT_PROMPTLY
            | {
                "PORT": str(gateway_port),
                "INSTANCE_ID": fresh("gateway"),
                "UPLOAD_URL": upload_url,
                "CORE_URL": unused_url,
                "MONITOR_URL": unused_url,
                "TRACKING_URLS": unused_url,
            },
            http_ok(f"{gateway_url}/health/ready"),
            tmp_path / "gateway.log",
        ),
    ]
    try:
        await start_together(servers)
        async with (
            httpx.AsyncClient(base_url=gateway_url, timeout=scaled(10)) as gateway,
            httpx.AsyncClient(base_url=upload_url, timeout=scaled(10)) as upload,
        ):
            yield Stack(gateway, upload, worker)
    finally:
        await stop_together(servers)


class Trace:
    """The spans a receiver holds for one trace, and how they hang together."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans
        self.by_id = {span["span_id"]: span for span in spans}

    def all(
        self, service: str, kind: str, name: str | None = None, **attributes: Any
    ) -> list[Span]:
        return [
            span
            for span in self.spans
            if (span["service_name"], span["kind"]) == (service, kind)
            and name in (None, span["name"])
            and all(span["attributes"].get(key) == value for key, value in attributes.items())
        ]

    def one(self, service: str, kind: str, name: str | None = None) -> Span | None:
        found = self.all(service, kind, name)
        return found[0] if len(found) == 1 else None

    def under(self, span: Span, ancestor: Span) -> bool:
        parent = self.by_id.get(span["parent_span_id"] or "")
        while parent is not None:
            if parent is ancestor:
                return True
            parent = self.by_id.get(parent["parent_span_id"] or "")
        return False


def shortfalls(trace: Trace, caller: str) -> list[str]:
    """What keeps ``trace`` from being the whole request; empty once it is."""
    gateway = trace.one("gateway", "server")
    upload = trace.one("upload", "server")
    publish = trace.one("upload", "producer", f"apply_async/{PROCESS_DOCUMENT}")
    run = trace.one("worker", "consumer", f"run/{PROCESS_DOCUMENT}")
    mongo = trace.all("worker", "client", **{"db.system": "mongodb"})
    s3 = trace.all("worker", "client", **{"rpc.service": "S3"})
    expected = {
        "gateway server span": gateway,
        "upload server span": upload,
        "publish span": publish,
        "run span": run,
        "MongoDB span from the worker": mongo,
        "S3 span from the worker": s3,
    }
    if gateway is None or upload is None or publish is None or run is None or not mongo or not s3:
        return [f"no {what} yet" for what, found in expected.items() if not found]
    checks = {
        "the gateway continues the caller's trace": gateway["parent_span_id"] == caller,
        "upload's request is under the gateway's": trace.under(upload, gateway),
        "the publish is under upload's request": trace.under(publish, upload),
        "the task runs as the publish's child": run["parent_span_id"] == publish["span_id"],
        "the worker's MongoDB calls are under the task": all(trace.under(s, run) for s in mongo),
        "the worker's S3 calls are under the task": all(trace.under(s, run) for s in s3),
    }
    orphans = [
        f"{span['service_name']} {span['name']} has no parent in the trace"
        for span in trace.spans
        if span is not gateway and span["parent_span_id"] not in trace.by_id
    ]
    return [what for what, held in checks.items() if not held] + orphans


async def whole_trace(receiver: str, trace_id: str, caller: str) -> Trace:
    """The trace once the receiver holds all of it (spans arrive in batches, children first)."""
    deadline = asyncio.get_running_loop().time() + scaled(20)
    async with httpx.AsyncClient(base_url=receiver, timeout=scaled(5)) as client:
        while True:
            trace = Trace((await client.get(f"/traces/{trace_id}")).json())
            lacking = shortfalls(trace, caller)
            if not lacking:
                return trace
            if asyncio.get_running_loop().time() > deadline:
                received = sorted(
                    f"{s['service_name']} {s['kind']} {s['name']}" for s in trace.spans
                )
                pytest.fail(f"the trace is not whole: {lacking}; received {received}")
            await asyncio.sleep(0.2)


async def test_a_completed_upload_is_one_trace_from_the_gateway_to_the_workers_calls(
    stack: Stack, otlp_receiver: str
) -> None:
    driver = fresh("driver")
    data = jpeg()
    presigned = await presign(stack.gateway, driver, data, "image/jpeg")
    assert presigned.status_code == 201, presigned.text
    await send_to_s3(presigned.json(), data, "image/jpeg")
    upload_id = presigned.json()["upload_id"]
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    # Another test may have instrumented httpx in this process: it would replace our
    # traceparent with one of its own.
    with suppress_http_instrumentation():
        done = await stack.gateway.post(
            f"/api/uploads/{upload_id}/complete",
            headers=auth(driver, Role.DRIVER) | {"traceparent": f"00-{trace_id}-{caller}-01"},
        )
    assert done.status_code == 202, done.text
    assert (await verdict(stack.upload, driver, upload_id))["status"] == "verified"
    await asyncio.to_thread(stack.worker.stop)

    await whole_trace(otlp_receiver, trace_id, caller)
