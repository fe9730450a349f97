"""The Celery worker application: the shared Celery config plus this worker's tasks."""

from __future__ import annotations

from celery import Celery

from tripline.common.celery_app import create_celery
from tripline.common.queues import Queue
from tripline.worker.documents import register_document_tasks
from tripline.worker.notifications import register_notification_tasks
from tripline.worker.payments import register_payment_tasks
from tripline.worker.settings import WorkerSettings
from tripline.worker.stats import register_stats
from tripline.worker.system import register_system_tasks

# Client libraries the worker uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES = ("celery", "redis", "pymongo", "botocore", "httpx")


def create_worker_app(settings: WorkerSettings) -> Celery:
    """Build the worker's Celery app with every task registered; no I/O happens here.

    Tracing is configured once in the main process before the pool forks; the SDK's span
    processors restart their export threads in each child by themselves.
    """
    app = create_celery(settings, main="tripline.worker")
    register_system_tasks(app)
    register_notification_tasks(app, settings)
    register_payment_tasks(app, settings)
    register_document_tasks(app, settings)
    register_stats(app, settings, consumed_queues(settings))
    return app


def consumed_queues(settings: WorkerSettings) -> tuple[str, ...]:
    """The queues this worker consumes: ``WORKER_QUEUES``, or every queue when empty."""
    named = tuple(name.strip() for name in settings.worker_queues.split(",") if name.strip())
    return named or tuple(queue.value for queue in Queue)


def worker_argv(settings: WorkerSettings) -> list[str]:
    """The ``celery worker`` command line for these settings: every queue, one node name."""
    return [
        "worker",
        f"--loglevel={settings.log_level}",
        f"--queues={','.join(consumed_queues(settings))}",
        f"--concurrency={settings.worker_concurrency}",
        f"--pool={settings.worker_pool}",
        f"--hostname={settings.service_name}@{settings.instance_id}",
        "--without-gossip",
        "--without-mingle",
    ]
