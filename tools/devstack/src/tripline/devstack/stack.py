"""The whole local stack: which processes, on which ports, with which environment.

Ports default to the ones in DESIGN.md and each can be overridden from the environment
(``GATEWAY_PORT=9080 make up``). Start order is by group: the backends, then every service at
once (the gateway needs no upstream to start; its ``/health`` reports what is missing).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tripline.common.queues import Queue
from tripline.devstack.backends import BackendPorts, BackendUrls, backend_specs
from tripline.devstack.probes import celery_worker, http_ok
from tripline.devstack.process import ProcessSpec

DEFAULT_PORTS: dict[str, int] = {
    "GATEWAY_PORT": 8080,
    "CORE_PORT": 8081,
    "UPLOAD_PORT": 8082,
    "TRACKING_PORT": 8083,
    "MONITOR_PORT": 8084,
    "TRACKING_2_PORT": 8085,
    "PAYMENT_SANDBOX_PORT": 8090,
    "NOTIFICATION_SANDBOX_PORT": 8091,
    "REDIS_PORT": 6380,
    "MONGO_PORT": 27018,
    "S3_PORT": 9000,
}


@dataclass(frozen=True)
class StackPorts:
    gateway: int
    core: int
    upload: int
    tracking: int
    tracking_2: int
    monitor: int
    payment_sandbox: int
    notification_sandbox: int
    backends: BackendPorts

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StackPorts:
        """Read ``*_PORT`` overrides; raises ``ValueError`` naming a bad value."""
        values: dict[str, int] = {}
        for name, default in DEFAULT_PORTS.items():
            raw = environ.get(name, str(default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ValueError(f"{name}={raw!r} is not a port number")
            values[name] = int(raw)
        return cls(
            gateway=values["GATEWAY_PORT"],
            core=values["CORE_PORT"],
            upload=values["UPLOAD_PORT"],
            tracking=values["TRACKING_PORT"],
            tracking_2=values["TRACKING_2_PORT"],
            monitor=values["MONITOR_PORT"],
            payment_sandbox=values["PAYMENT_SANDBOX_PORT"],
            notification_sandbox=values["NOTIFICATION_SANDBOX_PORT"],
            backends=BackendPorts(
                redis=values["REDIS_PORT"], mongo=values["MONGO_PORT"], s3=values["S3_PORT"]
            ),
        )

    def all(self) -> dict[str, int]:
        return {
            "gateway": self.gateway,
            "core": self.core,
            "upload": self.upload,
            "tracking-1": self.tracking,
            "tracking-2": self.tracking_2,
            "monitor": self.monitor,
            "sandbox-payments": self.payment_sandbox,
            "sandbox-notifications": self.notification_sandbox,
            "redis": self.backends.redis,
            "mongodb": self.backends.mongo,
            "s3": self.backends.s3,
        }


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def service_spec(
    name: str, module: str, port: int, env: Mapping[str, str], *, instance: str | None = None
) -> ProcessSpec:
    """A Tripline HTTP service run as ``python -m <module>``, ready on ``/health/ready``."""
    return ProcessSpec(
        name,
        [sys.executable, "-m", module],
        http_ok(f"{url(port)}/health/ready"),
        env={**env, "PORT": str(port), "INSTANCE_ID": instance or name},
        stop_timeout_s=20,
    )


def monitor_targets(ports: StackPorts) -> str:
    """Every service replica the monitor probes and scrapes, as ``MONITOR_TARGETS``."""
    return ",".join(
        f"{name}={url(port)}"
        for name, port in (
            ("gateway", ports.gateway),
            ("core", ports.core),
            ("upload", ports.upload),
            ("tracking", ports.tracking),
            ("tracking", ports.tracking_2),
        )
    )


def service_env(ports: StackPorts, backends: BackendUrls) -> dict[str, str]:
    """Environment every service of the local stack shares."""
    return {
        **backends.env(),
        "HOST": "127.0.0.1",
        "PAYMENT_SANDBOX_URL": url(ports.payment_sandbox),
        "NOTIFICATION_SANDBOX_URL": url(ports.notification_sandbox),
        "CORE_URL": url(ports.core),
        "UPLOAD_URL": url(ports.upload),
        "TRACKING_URLS": f"{url(ports.tracking)},{url(ports.tracking_2)}",
        "MONITOR_URL": url(ports.monitor),
        "MONITOR_TARGETS": monitor_targets(ports),
        "PYTHONUNBUFFERED": "1",
    }


GENERAL_QUEUES = tuple(queue for queue in Queue if queue is not Queue.DOCUMENTS)


def worker_spec(
    name: str,
    redis_url: str,
    env: dict[str, str],
    *,
    queues: tuple[Queue, ...],
    pool: str = "prefork",
    concurrency: int = 2,
) -> ProcessSpec:
    """A Celery worker consuming ``queues``; ready when its node answers a ping."""
    instance = f"{name}-1"
    return ProcessSpec(
        name,
        [sys.executable, "-m", "tripline.worker"],
        celery_worker(redis_url, f"worker@{instance}"),
        env={
            **env,
            "INSTANCE_ID": instance,
            "WORKER_QUEUES": ",".join(queue.value for queue in queues),
            "WORKER_POOL": pool,
            "WORKER_CONCURRENCY": str(concurrency),
        },
        stop_timeout_s=20,
    )


def stack_groups(ports: StackPorts, data_dir: Path) -> list[list[ProcessSpec]]:
    """The stack in start order; each inner list starts together."""
    backends = BackendUrls.for_ports(ports.backends)
    env = service_env(ports, backends)
    return [
        backend_specs(ports.backends, data_dir, durable=True),
        [
            service_spec("sandbox-payments", "tripline.sandbox", ports.payment_sandbox, env),
            service_spec(
                "sandbox-notifications", "tripline.sandbox", ports.notification_sandbox, env
            ),
            service_spec("core", "tripline.core", ports.core, env),
            service_spec("upload", "tripline.upload", ports.upload, env),
            service_spec("tracking-1", "tripline.tracking", ports.tracking, env),
            service_spec("tracking-2", "tripline.tracking", ports.tracking_2, env),
            service_spec("monitor", "tripline.monitor", ports.monitor, env),
            worker_spec("worker", backends.redis_url, env, queues=GENERAL_QUEUES),
            # Documents wait on S3 and MongoDB far more than they compute: ten threads in one
            # process cost a few MB where ten prefork children would cost ten interpreters.
            worker_spec(
                "worker-documents",
                backends.redis_url,
                env,
                queues=(Queue.DOCUMENTS,),
                pool="threads",
                concurrency=10,
            ),
            service_spec("gateway", "tripline.gateway", ports.gateway, env),
        ],
    ]
