"""How the worker's tasks retry: only transient failures, with capped backoff, then give up.

A retry waits on the worker as an unacknowledged message (``countdown``), so the cap must stay
well inside the broker's visibility timeout (see :class:`~tripline.worker.settings.WorkerSettings`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task

from tripline.common.logs import get_logger

log = get_logger(__name__)


class TransientFailure(Exception):
    """The work may succeed later: retry it."""


def backoff_s(
    attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """How long to wait before retry number ``attempt`` (0 for the first retry).

    The ceiling doubles per attempt up to ``max_s``; the wait is drawn from its upper half, so
    retries of many tasks that failed together spread out but never come back immediately.
    """
    ceiling = min(max_s, base_s * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_s: float
    max_s: float

    def retry_or_give_up(
        self,
        task: Task[Any, Any],
        exc: TransientFailure,
        *,
        give_up: Callable[[str], str],
        subject: dict[str, str],
    ) -> str:
        """Schedule the next attempt of ``task`` (raises celery's ``Retry``: let it propagate),
        or, once ``max_attempts`` have failed, return ``give_up(reason)``."""
        attempt = task.request.retries + 1
        if attempt >= self.max_attempts:
            log.error("task abandoned", task=task.name, attempts=attempt, error=str(exc), **subject)
            return give_up(f"gave up after {attempt} attempts: {exc}")
        delay = backoff_s(task.request.retries, base_s=self.base_s, max_s=self.max_s)
        log.warning(
            "task retry",
            task=task.name,
            attempt=attempt,
            delay_s=round(delay, 2),
            error=str(exc),
            **subject,
        )
        raise task.retry(exc=exc, countdown=delay) from exc
