"""How the worker's tasks retry: only transient failures, with capped backoff, then give up.

A retry waits on the worker as an unacknowledged message (``countdown``), so the cap must stay
well inside the broker's visibility timeout (see :class:`~tripline.worker.settings.WorkerSettings`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError
from celery import Task
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from tripline.common.errors import DependencyUnavailable
from tripline.common.logs import get_logger
from tripline.common.mongo import is_unavailable

log = get_logger(__name__)

T = TypeVar("T")


class TransientFailure(Exception):
    """The work may succeed later: retry it."""


@contextmanager
def dependency_calls(name: str) -> Iterator[None]:
    """Re-raise a dependency not answering as :class:`TransientFailure`."""
    try:
        yield
    except (RedisError, OSError, BotoCoreError, DependencyUnavailable) as exc:
        raise TransientFailure(f"{name}: {exc!r}") from exc
    except PyMongoError as exc:
        if not is_unavailable(exc):
            raise
        raise TransientFailure(f"mongodb: {exc!r}") from exc


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


def per_process(factory: Callable[[], T]) -> Callable[[], T]:
    """A getter that makes ``factory()`` on first use and then returns the same object.

    Tasks call it at run time, so each forked pool child makes its own clients (sockets and
    breakers are never shared across a fork); with the threads pool one object serves every
    thread, made once under a lock.
    """
    made: list[T] = []
    lock = threading.Lock()

    def get() -> T:
        with lock:
            if not made:
                made.append(factory())
        return made[0]

    return get
