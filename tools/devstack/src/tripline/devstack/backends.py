"""The real servers the services depend on: Redis, SecantusDB (MongoDB wire protocol), moto S3.

Each function returns a :class:`ProcessSpec`; the local stack and the test harness start them
the same way, differing only in ports, folders and durability.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tripline.devstack.probes import http_answers, mongo_ping, redis_ping
from tripline.devstack.process import ProcessSpec

REDIS_INSTALL_HINT = (
    "redis-server was not found on PATH. Install it, then run the command again:\n"
    "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y redis-server\n"
    "  Fedora:        sudo dnf install -y redis\n"
    "  macOS:         brew install redis\n"
    "Only the binary is used; no system Redis service needs to run."
)


class MissingBinary(RuntimeError):
    pass


@dataclass(frozen=True)
class BackendPorts:
    redis: int
    mongo: int
    s3: int


@dataclass(frozen=True)
class BackendUrls:
    redis_url: str
    mongo_url: str
    s3_endpoint_url: str

    @classmethod
    def for_ports(cls, ports: BackendPorts, host: str = "127.0.0.1") -> BackendUrls:
        return cls(
            redis_url=f"redis://{host}:{ports.redis}/0",
            mongo_url=f"mongodb://{host}:{ports.mongo}/?directConnection=true",
            s3_endpoint_url=f"http://{host}:{ports.s3}",
        )

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "MONGO_URL": self.mongo_url,
            "S3_ENDPOINT_URL": self.s3_endpoint_url,
        }


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def redis_binary() -> str:
    """Path of ``redis-server``; raises :class:`MissingBinary` with install instructions."""
    found = shutil.which("redis-server")
    if found is None:
        raise MissingBinary(REDIS_INSTALL_HINT)
    return found


def redis_spec(port: int, data_dir: Path, *, durable: bool, name: str = "redis") -> ProcessSpec:
    """Redis bound to loopback. ``durable`` turns on the append-only file (fsync every second)
    so accepted work survives a crash of the local stack; tests run without it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if durable else "no",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip
    return ProcessSpec(name, argv, redis_ping(port), stop_timeout_s=10)


def mongo_spec(port: int, data_dir: Path, *, name: str = "mongodb") -> ProcessSpec:
    """SecantusDB standalone. An empty config file stops it picking up a stray secantusd.toml;
    SIGTERM takes a few seconds, and the folder must outlive the process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "secantusd.toml"
    config.touch()
    argv = [
        venv_tool("secantusd-py"),
        "--config", str(config),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--storage-path", str(data_dir / "db"),
        "--standalone",
        "--log-level", "WARNING",
    ]  # fmt: skip
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    return ProcessSpec(name, argv, mongo_ping(url), stop_timeout_s=15)


def s3_spec(port: int, *, name: str = "s3") -> ProcessSpec:
    """moto's standalone S3 server (in memory). It ignores presigned POST conditions."""
    argv = [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    return ProcessSpec(name, argv, http_answers(f"http://127.0.0.1:{port}/"), stop_timeout_s=5)


def backend_specs(ports: BackendPorts, data_dir: Path, *, durable: bool) -> list[ProcessSpec]:
    return [
        redis_spec(ports.redis, data_dir / "redis", durable=durable),
        mongo_spec(ports.mongo, data_dir / "mongodb"),
        s3_spec(ports.s3),
    ]
