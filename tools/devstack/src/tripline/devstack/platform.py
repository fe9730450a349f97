"""A whole monitored platform for tests: its own backends, every service, a worker and the
monitor, as real processes on free ports, started the way the local stack starts them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.backends import BackendPorts
from tripline.devstack.harness import (
    Backends,
    Server,
    start_backends,
    start_together,
    stop_together,
)
from tripline.devstack.ports import free_ports
from tripline.devstack.stack import StackPorts, service_env, service_spec, url, worker_spec

# Fast looks, so tests see a change within a couple of seconds.
MONITOR_ENV: Mapping[str, str] = {
    "HEALTH_INTERVAL_S": "0.5",
    "SCRAPE_INTERVAL_S": "1",
    "ALERT_EVAL_INTERVAL_S": "1",
    "ALERT_FOR_S": "1",
    "HEALTH_CHECK_TIMEOUT_S": "1.5",
}
NO_ENV: Mapping[str, str] = MappingProxyType({})


@dataclass
class PlatformStack:
    """The running platform; ``redis`` and ``mongo`` may be stopped and started again."""

    backends: Backends
    ports: StackPorts
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def redis(self) -> Server:
        return self.backends.redis

    @property
    def mongo(self) -> Server:
        return self.backends.mongo

    @property
    def gateway_url(self) -> str:
        return url(self.ports.gateway)

    @property
    def monitor_url(self) -> str:
        return url(self.ports.monitor)

    @property
    def admin_token(self) -> str:
        return mint_token(LOCAL_JWT_SECRET, sub="ops-test", role=Role.ADMIN, ttl_s=6 * 3600)

    def stop(self) -> None:
        asyncio.run(stop_together(list(self.servers.values())))
        self.backends.stop()


def start_platform(
    root: Path,
    *,
    monitor_env: Mapping[str, str] = MONITOR_ENV,
    tracking_replicas: int = 1,
    gateway_env: Mapping[str, str] = NO_ENV,
) -> PlatformStack:
    """Start backends, core, upload, ``tracking_replicas`` tracking replicas (1 or 2), a worker
    on every queue, the monitor and the gateway under ``root``; raises RuntimeError (with logs)
    if one fails, ValueError for another number of replicas.

    A second replica is the server ``tracking-2`` on ``ports.tracking_2``. ``gateway_env`` is
    added to the gateway's environment (lower limits, faster breakers...).
    """
    if tracking_replicas not in (1, 2):
        raise ValueError(f"1 or 2 tracking replicas, not {tracking_replicas}")
    backends = start_backends(root)
    gateway, core, upload, tracking, tracking_2, monitor, pay, notify = free_ports(8)
    if tracking_replicas == 1:
        # One tracking replica: naming it twice makes one target (repeats are kept once).
        tracking_2 = tracking
    ports = StackPorts(
        gateway=gateway,
        core=core,
        upload=upload,
        tracking=tracking,
        tracking_2=tracking_2,
        monitor=monitor,
        payment_sandbox=pay,
        notification_sandbox=notify,
        backends=BackendPorts(_port(backends.redis), _port(backends.mongo), _port(backends.s3)),
    )
    replicas = {"tracking": tracking}
    if tracking_replicas == 2:
        replicas["tracking-2"] = tracking_2
    env = {
        **service_env(ports, backends.urls),
        "TRACKING_URLS": ",".join(url(port) for port in replicas.values()),
    }
    specs = [
        service_spec("core", "tripline.core", core, env),
        service_spec("upload", "tripline.upload", upload, env),
        *(service_spec(name, "tripline.tracking", port, env) for name, port in replicas.items()),
        service_spec("monitor", "tripline.monitor", monitor, {**env, **monitor_env}),
        worker_spec(
            "worker",
            backends.urls.redis_url,
            env,
            queues=(),
            pool="threads",
            concurrency=4,
        ),
        service_spec(
            "gateway", "tripline.gateway", gateway, {**env, "HEALTH_CACHE_S": "0.5", **gateway_env}
        ),
    ]
    stack = PlatformStack(backends, ports)
    stack.servers = {spec.name: Server(spec, root / f"{spec.name}.log") for spec in specs}
    try:
        asyncio.run(start_together(list(stack.servers.values())))
    except Exception:
        stack.stop()
        raise
    return stack


def _port(server: Server) -> int:
    if server.port is None:
        raise RuntimeError(f"{server.spec.name} has no port")
    return server.port
