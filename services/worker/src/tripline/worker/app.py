"""The Celery worker application: the shared Celery config plus this worker's tasks."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from tripline.common.celery_app import create_celery
from tripline.common.queues import Queue
from tripline.common.telemetry import configure_tracing
from tripline.worker.settings import WorkerSettings
from tripline.worker.system import register_system_tasks

# Client libraries the worker uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES = ("celery", "redis", "pymongo", "botocore", "httpx")


def create_worker_app(settings: WorkerSettings) -> Celery:
    """Build the worker's Celery app with every task registered; no I/O happens here."""
    app = create_celery(settings, main="tripline.worker")
    register_system_tasks(app)

    def trace_child(**_kwargs: Any) -> None:
        # Span exporters run threads, which do not survive fork: each pool child needs its own.
        configure_tracing(settings, INSTRUMENTED_LIBRARIES)

    worker_process_init.connect(trace_child, weak=False)
    return app


def worker_argv(settings: WorkerSettings) -> list[str]:
    """The ``celery worker`` command line for these settings: every queue, one node name."""
    return [
        "worker",
        f"--loglevel={settings.log_level}",
        f"--queues={','.join(queue.value for queue in Queue)}",
        f"--concurrency={settings.worker_concurrency}",
        f"--pool={settings.worker_pool}",
        f"--hostname={settings.service_name}@{settings.instance_id}",
        "--without-gossip",
        "--without-mingle",
    ]
