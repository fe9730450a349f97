"""Spans of the worker's pool processes reach the exporter even when a process stops.

A prefork child inherits the tracer provider, its span processors and the Celery
instrumentation's signal handlers when it is forked (the SDK restarts its export thread in the
child by itself), so nothing is configured again there. But a child leaves with ``os._exit``:
the exit hook that sends the last batch never runs, and the spans of its final seconds
(``OTEL_BSP_SCHEDULE_DELAY``, 5 s by default) would be lost at every shutdown. Each child sends
them as it stops instead. Threads and solo pools run in the main process, whose exit hook does
it.
"""

from __future__ import annotations

from celery.signals import worker_process_shutdown
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

# Bounds a stopping child's wait on an unreachable collector.
FLUSH_TIMEOUT_MS = 2000


def flush_spans_as_children_stop() -> None:
    """Make each pool child send its finished spans before it exits."""
    worker_process_shutdown.connect(_flush, weak=False, dispatch_uid="tripline-flush-spans")


def _flush(**_: object) -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(FLUSH_TIMEOUT_MS)
