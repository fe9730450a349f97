"""System tasks: the round trip that proves a worker is consuming."""

from __future__ import annotations

import socket
import time
from typing import Any

from celery import Celery

from tripline.common.queues import Task


def register_system_tasks(app: Celery) -> None:
    @app.task(name=Task.PING.value, ignore_result=False, acks_late=True)
    def ping(nonce: str) -> dict[str, Any]:
        """Answer ``nonce`` back with who answered and when. Idempotent: no side effects."""
        return {"nonce": nonce, "worker": socket.gethostname(), "ts": time.time()}
