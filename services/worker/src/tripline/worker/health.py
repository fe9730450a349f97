"""The worker's own health endpoint, for Kubernetes probes: ``GET /health/live`` and
``GET /health/ready`` on ``WORKER_HEALTH_PORT`` (off when unset).

The worker has no web server of its own, and an exec probe would start a Python interpreter
(and a Celery app) every few seconds. This is a small HTTP server on a daemon thread of the
worker's main process instead:

- live while the heartbeat thread runs (the process is not wedged); it never depends on Redis,
  so a broker outage does not get every worker restarted;
- ready while a heartbeat reached Redis within :data:`READY_WITHIN_S`: the worker can take
  work; 503 with the reason otherwise.

Readiness is deliberately slower to turn than the monitor's view of consumers (a beat key that
expires after ``HEARTBEAT_TTL_S``): a worker pod has no Service, so readiness only paces
rollouts and disruption budgets, which a few late beats must not stall.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Thirty seconds without a beat reaching Redis: an outage, not a slow beat.
READY_WITHIN_S = 30.0


class HeartbeatState:
    """What the health endpoint reads: whether the heartbeat thread runs, and when a beat
    last reached Redis."""

    def __init__(self) -> None:
        self.running = False
        self.last_ok_at: float | None = None
        self.last_error: str | None = None


def answer(path: str, state: HeartbeatState, now: float) -> tuple[int, dict[str, Any]] | None:
    """The status and body for ``path``; None for a path not served here."""
    if path == "/health/live":
        if state.running:
            return 200, {"status": "live"}
        return 503, {"status": "dead", "error": "the heartbeat thread is not running"}
    if path == "/health/ready":
        fresh = state.last_ok_at is not None and now - state.last_ok_at < READY_WITHIN_S
        if state.running and fresh:
            return 200, {"status": "ready"}
        return 503, {"status": "unready", "error": state.last_error or "no heartbeat reached Redis"}
    return None


class HealthServer:
    """Serves :func:`answer` on ``host:port`` from a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        state: HeartbeatState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                result = answer(self.path.split("?", 1)[0], state, clock())
                status, body = result or (404, {"status": "not found"})
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Probes every few seconds are not news."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
