"""Pytest fixtures that start the real servers Tripline depends on.

Registered as a pytest plugin (entry point ``tripline``), so every test folder gets them:

- ``backends``: Redis, SecantusDB and moto S3 on free ports for the whole session;
- ``backend_env``: their URLs as environment variables, for subprocesses;
- ``settings_for``: build a service's settings pointing at them;
- ``fresh_redis``: a Redis of the test's own, to stop and restart without disturbing others;
- ``span_exporter``: the process's tracer provider with an in-memory exporter;
- ``otlp_receiver``: an OTLP/HTTP trace receiver process for the session (its URL), where
  processes started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` at it send their spans;
- ``tmp_logs``: a folder for subprocess logs, kept on failure for reading;
- ``unanswered_url``: an address whose connections never complete (a connect timeout);
- ``platform_stack``: every service, a worker and the monitor, with backends of their own;
- ``client_platform``: the same with two tracking replicas, a low standard-tier limit and a
  quick gateway breaker, for the client SDK's tests;
- ``providers``: the provider sandbox and one worker process (notifications, payments) with
  fast retries, for the session; tests put the sandbox back to ``ok`` when they change it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tripline.common.settings import ServiceSettings
from tripline.common.telemetry import configure_tracing
from tripline.devstack.harness import (
    Backends,
    Server,
    python_process,
    start_backends,
    start_redis,
    start_together,
    stop_together,
    temporary_root,
)
from tripline.devstack.platform import PlatformStack, start_platform
from tripline.devstack.ports import free_port
from tripline.devstack.probes import celery_worker, http_ok
from tripline.devstack.testing import fresh

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    with temporary_root() as root:
        started = start_backends(root)
        try:
            yield started
        finally:
            started.stop()


@pytest.fixture(scope="session")
def backend_env(backends: Backends) -> dict[str, str]:
    return backends.env()


@pytest.fixture
def settings_for(backends: Backends) -> Callable[..., Any]:
    """``settings_for(CoreSettings, port=0, ...)`` → settings pointing at the test backends."""

    def build(cls: type[SettingsT], **overrides: Any) -> SettingsT:
        values: dict[str, Any] = {
            "redis_url": backends.urls.redis_url,
            "mongo_url": backends.urls.mongo_url,
            "s3_endpoint_url": backends.urls.s3_endpoint_url,
            "instance_id": "test",
        }
        values.update(overrides)
        return cls(**values)

    return build


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[Server]:
    server = start_redis(tmp_path, name="redis-own")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The in-memory exporter behind this process's tracer provider (installed once).

    Tests must ``clear()`` it before acting and filter spans by trace id.
    """
    exporter = configure_tracing(ServiceSettings(service_name="tests", otel_exporter="memory"))
    if exporter is None:
        raise RuntimeError("the memory exporter was not created")
    return exporter


@pytest.fixture(scope="session")
def otlp_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an OTLP/HTTP receiver process (:mod:`tripline.devstack.otlp`): the value for
    ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``GET <url>/traces/<trace_id>`` lists what it received."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    receiver = python_process(
        "otlp",
        "tripline.devstack.otlp",
        {"PORT": str(port)},
        http_ok(f"{url}/health"),
        Path(tmp_path_factory.mktemp("otlp")) / "otlp.log",
    )
    receiver.start()
    try:
        yield url
    finally:
        receiver.stop()


@pytest.fixture
def tmp_logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def unanswered_url() -> Iterator[str]:
    """A server address whose connections never complete: a listener with a full accept queue.

    Linux drops a SYN when the listener's queue is full, so a client's connect times out.
    """
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def platform_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformStack]:
    """The whole platform as processes with backends of its own (tests may stop and start its
    ``redis`` and ``mongo``, and must leave them running)."""
    stack = start_platform(Path(tmp_path_factory.mktemp("platform")))
    try:
        yield stack
    finally:
        stack.stop()


# The client SDK's tests meet 429 within a few calls, and see the breaker open and close again
# within seconds instead of waiting out the production defaults. They count each attempt's
# answer, so a busy test machine must not make the gateway shed their normal-priority calls.
CLIENT_GATEWAY_ENV = {
    "LIMIT_STANDARD_PER_MIN": "20",
    "BREAKER_FAILURE_THRESHOLD": "4",
    "BREAKER_RESET_S": "3",
    "SHED_TARGET_S": "1",
}


@pytest.fixture(scope="session")
def client_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformStack]:
    """The whole platform for the client SDK's tests: two tracking replicas (servers
    ``tracking`` and ``tracking-2``), a standard-tier limit of 20 requests a minute, a gateway
    breaker that opens after 4 failures for 3 s, and shedding only for a loop a second late.
    Tests may stop, kill and start any server and must leave each one running."""
    stack = start_platform(
        Path(tmp_path_factory.mktemp("client-platform")),
        tracking_replicas=2,
        gateway_env=CLIENT_GATEWAY_ENV,
    )
    try:
        yield stack
    finally:
        stack.stop()


@dataclass(frozen=True)
class Providers:
    """The sandbox and a worker; services under test must use ``database`` (the worker's)."""

    database: str
    sandbox_url: str
    worker: Server


@pytest.fixture(scope="session")
def providers(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    logs = Path(tmp_path_factory.mktemp("providers"))
    database = fresh("providers")
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    instance = fresh("worker")
    sandbox = python_process(
        "sandbox",
        "tripline.sandbox",
        {**backends.env(), "PORT": str(port)},
        http_ok(f"{sandbox_url}/health/ready"),
        logs / "sandbox.log",
    )
    fast_retries = {
        f"{kind}_{name}": value
        for kind in ("NOTIFICATION", "PAYMENT")
        for name, value in (("RETRY_BASE_S", "0.2"), ("RETRY_MAX_S", "1"))
    }
    worker = python_process(
        "worker",
        "tripline.worker",
        {
            **backends.env(),
            **fast_retries,
            "MONGO_DB": database,
            "INSTANCE_ID": instance,
            "WORKER_CONCURRENCY": "2",
            "NOTIFICATION_SANDBOX_URL": sandbox_url,
            "PAYMENT_SANDBOX_URL": sandbox_url,
            "PAYMENT_TIMEOUT_S": "1",
        },
        celery_worker(backends.urls.redis_url, f"worker@{instance}"),
        logs / "worker.log",
    )
    servers = [sandbox, worker]
    try:
        asyncio.run(start_together(servers))
        yield Providers(database, sandbox_url, worker)
    finally:
        asyncio.run(stop_together(servers))
