"""Helpers for tests that run against real servers: backends on free ports, services in-process
or as subprocesses, and timeouts that scale with ``TRIPLINE_TEST_TIMEOUT_FACTOR``."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp

from tripline.devstack.backends import (
    BackendPorts,
    BackendUrls,
    mongo_spec,
    redis_spec,
    s3_spec,
)
from tripline.devstack.ports import free_port, free_ports
from tripline.devstack.probes import Probe
from tripline.devstack.process import ManagedProcess, ProcessSpec

TIMEOUT_FACTOR_ENV = "TRIPLINE_TEST_TIMEOUT_FACTOR"


def timeout_factor() -> float:
    """How much slower than a quiet 2-core machine this one is (default 1)."""
    raw = os.environ.get(TIMEOUT_FACTOR_ENV, "1")
    try:
        factor = float(raw)
    except ValueError:
        return 1.0
    return factor if factor > 0 else 1.0


def scaled(seconds: float) -> float:
    """A test timeout of ``seconds`` on a quiet machine, scaled for this one."""
    return seconds * timeout_factor()


@dataclass
class Server:
    """A real process a test owns (a backend, a service, the worker), output in a log file;
    restartable, on the same port when it has one."""

    spec: ProcessSpec
    log_path: Path
    port: int | None = None
    ready_timeout_s: float = 60.0
    process: ManagedProcess | None = field(default=None, init=False)

    def launch(self) -> ManagedProcess:
        """Start the process without waiting for it to be ready."""
        with self.log_path.open("ab") as log:
            self.process = ManagedProcess(self.spec, output=log)
            self.process.start()
        return self.process

    def start(self) -> None:
        """Start the process and wait until its probe passes.

        Raises :class:`RuntimeError` with the end of its log when it never becomes ready; the
        process is stopped first.
        """
        process = self.launch()
        try:
            process.wait_ready(scaled(self.ready_timeout_s))
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- {self.spec.name} log ---\n{self.log_tail()}") from exc

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its sockets open, until :meth:`resume`."""
        if self.process is not None:
            self.process.pause()

    def resume(self) -> None:
        if self.process is not None:
            self.process.resume()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Backends:
    redis: Server
    mongo: Server
    s3: Server
    urls: BackendUrls

    def env(self) -> dict[str, str]:
        return self.urls.env()

    def stop(self) -> None:
        for server in (self.redis, self.mongo, self.s3):
            server.stop()


def start_redis(root: Path, *, name: str = "redis", durable: bool = False) -> Server:
    port = free_port()
    spec = redis_spec(port, root / name, durable=durable, name=name)
    server = Server(spec, root / f"{name}.log", port)
    server.start()
    return server


def start_backends(root: Path) -> Backends:
    """Start Redis, SecantusDB and moto on free ports under ``root``; stop with ``.stop()``."""
    ports = BackendPorts(*free_ports(3))
    servers = [
        Server(
            redis_spec(ports.redis, root / "redis", durable=False), root / "redis.log", ports.redis
        ),
        Server(mongo_spec(ports.mongo, root / "mongodb"), root / "mongodb.log", ports.mongo),
        Server(s3_spec(ports.s3), root / "s3.log", ports.s3),
    ]
    launched = [server.launch() for server in servers]
    try:
        for server, process in zip(servers, launched, strict=True):
            process.wait_ready(scaled(server.ready_timeout_s))
    except Exception:
        for server in servers:
            server.stop()
        raise
    redis, mongo, s3 = servers
    return Backends(redis, mongo, s3, BackendUrls.for_ports(ports))


@contextmanager
def temporary_root(prefix: str = "tripline-test-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


@asynccontextmanager
async def serve_app(app: ASGIApp, *, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop on a free port (lifespan included); yields its URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        http="httptools",
        # As the services' own server: the app, not uvicorn, decides whom to believe.
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # The test runner owns the signals.
    server.capture_signals = _no_signal_capture  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + scaled(30)
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the app stopped while starting")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the app did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextmanager
def _no_signal_capture() -> Iterator[None]:
    yield


async def start_together(servers: Sequence[Server]) -> None:
    """Launch every process, then wait for all of them at once (start-up costs overlap).

    Launching happens on this thread: the processes die with the thread that started them.
    Raises :class:`RuntimeError` naming each server that did not become ready, with its log.
    """
    launched = [server.launch() for server in servers]
    results = await asyncio.gather(
        *(
            asyncio.to_thread(process.wait_ready, scaled(server.ready_timeout_s))
            for server, process in zip(servers, launched, strict=True)
        ),
        return_exceptions=True,
    )
    failed = [
        f"{server.spec.name}: {result}\n{server.log_tail()}"
        for server, result in zip(servers, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failed:
        raise RuntimeError("\n".join(failed))


async def stop_together(servers: Sequence[Server]) -> None:
    await asyncio.gather(*(asyncio.to_thread(server.stop) for server in servers))


async def scrape_metric(client: httpx.AsyncClient, name: str, **labels: str) -> float | None:
    """The sum of the samples of ``name`` on the service's ``/metrics`` whose labels include
    ``labels``; None when there is no such sample."""
    text = (await client.get("/metrics")).text
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def python_process(
    name: str, module: str, env: Mapping[str, str], probe: Probe, log_path: Path
) -> Server:
    """A Tripline service or the worker, run as ``python -m <module>`` with ``env``."""
    return Server(
        ProcessSpec(name, [sys.executable, "-m", module], probe, env=env, stop_timeout_s=15),
        log_path,
    )
