"""The local stack (what ``make start`` runs) as processes a test owns, for chaos tests.

The same process specs as ``tripline-stack`` (:func:`tripline.devstack.stack.stack_groups`:
durable Redis, SecantusDB, moto, both sandboxes, two tracking replicas, both workers), on free
ports and in a folder of the caller's, with every server a :class:`Server` handle that can be
paused (SIGSTOP), killed (SIGKILL) and started again on the same port and data folder, as a
supervisor or Kubernetes would. A second core replica, ``core-2``, may be added: the monitor
watches it, and the gateway is given both replicas in ``CORE_URLS`` beside ``CORE_URL`` (the
first replica), so a gateway that spreads core's traffic over replicas, as it does tracking's
with ``TRACKING_URLS``, reaches both; one that reads ``CORE_URL`` only reaches the first.

Nothing here touches a running ``make start``: every port is free when chosen and every file
lives under the caller's folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tripline.devstack.backends import BackendPorts, BackendUrls
from tripline.devstack.harness import Server, scaled, start_together, stop_together
from tripline.devstack.ports import free_ports
from tripline.devstack.process import ProcessSpec
from tripline.devstack.stack import StackPorts, monitor_targets, service_spec, stack_groups, url

BACKENDS = ("redis", "mongodb", "s3")
SECOND_CORE = "core-2"


@dataclass
class OwnedStack:
    """A running stack: its folder, ports and servers by process name (``redis``, ``mongodb``,
    ``s3``, ``core``, ``core-2`` when asked for, ``tracking-1``, ``tracking-2``, ``worker``,
    ``worker-documents``, ``sandbox-payments``, ``sandbox-notifications``, ``upload``,
    ``monitor``, ``gateway``)."""

    folder: Path
    ports: StackPorts
    servers: dict[str, Server]
    core_2_port: int | None = None

    @property
    def gateway_url(self) -> str:
        return url(self.ports.gateway)

    @property
    def tracking_urls(self) -> list[str]:
        return [url(self.ports.tracking), url(self.ports.tracking_2)]

    @property
    def core_urls(self) -> list[str]:
        extra = [] if self.core_2_port is None else [url(self.core_2_port)]
        return [url(self.ports.core), *extra]

    @property
    def payment_sandbox_url(self) -> str:
        return url(self.ports.payment_sandbox)

    @property
    def notification_sandbox_url(self) -> str:
        return url(self.ports.notification_sandbox)

    @property
    def backend_urls(self) -> BackendUrls:
        return BackendUrls.for_ports(self.ports.backends)

    def server(self, name: str) -> Server:
        """The server ``name``; raises ``KeyError`` listing the names there are."""
        try:
            return self.servers[name]
        except KeyError:
            raise KeyError(f"no process {name!r}; there are {', '.join(self.servers)}") from None

    def pids(self) -> dict[str, int]:
        """The pid of every process that runs now, by name."""
        return {
            name: server.process.pid
            for name, server in self.servers.items()
            if server.process is not None
            and server.process.pid is not None
            and server.process.running()
        }

    async def start_again(self, name: str) -> None:
        """Start ``name`` again (same port, same data folder) and wait until it is ready.

        The process is launched on the calling thread, which must outlive it (it gets SIGTERM
        when that thread ends); only the wait runs elsewhere. Raises ``RuntimeError`` with the
        end of its log when it does not become ready.
        """
        server = self.server(name)
        process = server.launch()
        try:
            await asyncio.to_thread(process.wait_ready, scaled(server.ready_timeout_s))
        except Exception as exc:
            raise RuntimeError(f"{exc}\n--- {name} log ---\n{server.log_tail()}") from exc

    async def stop(self) -> None:
        """Stop the services, then the backends (a paused process is resumed first)."""
        services = [s for name, s in self.servers.items() if name not in BACKENDS]
        await stop_together(services)
        await stop_together([self.servers[name] for name in BACKENDS if name in self.servers])


def free_stack_ports() -> tuple[StackPorts, int]:
    """Free ports for every process of the stack, and one more for a second core replica."""
    (
        gateway,
        core,
        upload,
        tracking,
        tracking_2,
        monitor,
        pay,
        notify,
        redis,
        mongo,
        s3,
        core_2,
    ) = free_ports(12)
    ports = StackPorts(
        gateway=gateway,
        core=core,
        upload=upload,
        tracking=tracking,
        tracking_2=tracking_2,
        monitor=monitor,
        payment_sandbox=pay,
        notification_sandbox=notify,
        backends=BackendPorts(redis, mongo, s3),
    )
    return ports, core_2


def owned_groups(
    ports: StackPorts,
    folder: Path,
    *,
    settings: Mapping[str, str],
    core_2_port: int | None = None,
) -> list[list[ProcessSpec]]:
    """The stack's process specs in start order: ``stack_groups`` with ``settings`` added to
    every service's environment and, with ``core_2_port``, a second core replica that the
    monitor watches and the gateway is told of in ``CORE_URLS``."""
    backends, services = stack_groups(ports, folder / "data")
    with_settings = [dataclasses.replace(s, env={**s.env, **settings}) for s in services]
    if core_2_port is None:
        return [backends, with_settings]
    core = next(spec for spec in with_settings if spec.name == "core")
    targets = f"{monitor_targets(ports)},core={url(core_2_port)}"
    second = service_spec(SECOND_CORE, "tripline.core", core_2_port, core.env, instance=SECOND_CORE)
    replicas = f"{url(ports.core)},{url(core_2_port)}"
    grown = []
    for spec in [*with_settings, second]:
        env = {**spec.env, "MONITOR_TARGETS": targets}
        if spec.name == "gateway":
            env["CORE_URLS"] = replicas
        grown.append(dataclasses.replace(spec, env=env))
    # The gateway last, as in stack_groups: everything it routes to is starting beside it.
    grown.sort(key=lambda spec: spec.name == "gateway")
    return [backends, grown]


async def start_owned_stack(
    folder: Path, *, settings: Mapping[str, str] | None = None, core_replicas: int = 1
) -> OwnedStack:
    """Start the stack under ``folder`` (data in ``data/``, one log per process in ``logs/``)
    on free ports, with ``settings`` added to every service's environment and ``core_replicas``
    (1 or 2) core replicas; returns once every process is ready.

    Raises ``ValueError`` for another number of core replicas, ``RuntimeError`` naming each
    process that did not become ready, with its log (everything started is stopped first).
    """
    if core_replicas not in (1, 2):
        raise ValueError(f"1 or 2 core replicas, not {core_replicas}")
    ports, spare = free_stack_ports()
    core_2_port = spare if core_replicas == 2 else None
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    groups = owned_groups(ports, folder, settings=settings or {}, core_2_port=core_2_port)
    servers = {
        spec.name: Server(spec, logs / f"{spec.name}.log", _port_of(spec.name, ports, core_2_port))
        for group in groups
        for spec in group
    }
    stack = OwnedStack(folder, ports, servers, core_2_port)
    try:
        for group in groups:
            await start_together([servers[spec.name] for spec in group])
    except Exception:
        await stack.stop()
        raise
    return stack


def _port_of(name: str, ports: StackPorts, core_2_port: int | None) -> int | None:
    if name == SECOND_CORE:
        return core_2_port
    return ports.all().get(name)
