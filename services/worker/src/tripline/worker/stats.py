"""What the worker tells the monitor and the upload service: task outcomes and the time tasks
ran per queue, and a heartbeat per node (see :mod:`tripline.common.queue_stats` for the keys).

The heartbeat is what says a queue has a consumer: a key that expires
:data:`~tripline.common.queue_stats.HEARTBEAT_TTL_S` after the latest beat, so a worker that
dies without a word (SIGKILL, OOM, a lost host) stops counting within that TTL.

Both are best effort: a Redis error here is logged and dropped, never allowed to fail a task
or stop the worker (the task's own work already went through; only the count is lost).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from redis import Redis
from redis.exceptions import RedisError

from tripline.common.logs import get_logger
from tripline.common.queue_stats import (
    BUCKET_TTL_S,
    GAVE_UP,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TTL_S,
    WORKERS_SEEN,
    TaskEvent,
    WorkerInfo,
    bucket_key,
    bucket_of,
    busy_key,
    total_key,
    worker_info_key,
)
from tripline.common.queues import TASK_QUEUES
from tripline.common.queues import Task as TaskName
from tripline.worker.boot import BOOT_ID
from tripline.worker.health import HealthServer, HeartbeatState
from tripline.worker.retrying import per_process
from tripline.worker.settings import WorkerSettings

log = get_logger(__name__)

# Heartbeats older than this are pruned from ``workers:seen`` (a node that never came back).
FORGET_AFTER_S = 3600


def event_for(state: str | None, retval: object) -> TaskEvent | None:
    """The outcome one run of a task counts as, from Celery's final state and its return value;
    None for states that are not an outcome."""
    if state == "SUCCESS":
        return TaskEvent.FAILED if retval == GAVE_UP else TaskEvent.PROCESSED
    if state == "FAILURE":
        return TaskEvent.FAILED
    if state == "RETRY":
        return TaskEvent.RETRIED
    return None


def queue_of(task: Task[Any, Any]) -> str | None:
    try:
        return TASK_QUEUES[TaskName(task.name)].value
    except ValueError:
        routing_key = (task.request.delivery_info or {}).get("routing_key")
        return str(routing_key) if routing_key else None


def busy_ms(seconds: float) -> int:
    """A run's time in whole milliseconds, at least 1: a run that took no measurable time still
    took a slot, and a zero would read as "no time recorded"."""
    return max(1, math.ceil(seconds * 1000))


class StatsRecorder:
    """Counts task outcomes, and the time each run kept its slot busy, in the buckets the
    monitor and the upload service read (one pipeline per task)."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock

    def record(self, queue: str, event: TaskEvent, ran_s: float | None = None) -> None:
        """Count one run's outcome, and its running time when it was measured."""
        bucket = bucket_of(self._clock())
        key = bucket_key(queue, event, bucket)
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, BUCKET_TTL_S)
                pipe.incr(total_key(queue, event))
                if ran_s is not None:
                    busy = busy_key(queue, bucket)
                    pipe.incrby(busy, busy_ms(ran_s))
                    pipe.expire(busy, BUCKET_TTL_S)
                pipe.execute()
        except RedisError as exc:
            log.warning("task outcome not counted", queue=queue, task_event=event, error=repr(exc))


class Heartbeat:
    """Beats every ``interval_s`` from a daemon thread of the worker's main process.

    It lives in the process that consumes from the broker, so it stops exactly when consuming
    does: a SIGKILLed main process (and with it the prefork pool's intake) stops beating.
    """

    def __init__(
        self,
        redis: Redis,
        info: WorkerInfo,
        *,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        state: HeartbeatState | None = None,
    ) -> None:
        self._redis = redis
        self._info = info
        self.state = state or HeartbeatState()
        self._interval_s = interval_s
        self._clock = clock
        self._failing = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.state.running = True
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say goodbye, so the node is counted offline at once."""
        self._stopped.set()
        self._thread.join(timeout=self._interval_s)
        self.state.running = False
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(WORKERS_SEEN, self._info.node)
                pipe.delete(worker_info_key(self._info.node))
                pipe.execute()
        except RedisError as exc:
            log.warning("heartbeat goodbye lost", error=repr(exc))

    def beat(self) -> None:
        now = self._clock()
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(WORKERS_SEEN, {self._info.node: now})
                pipe.set(
                    worker_info_key(self._info.node),
                    self._info.to_json(),
                    px=int(HEARTBEAT_TTL_S * 1000),
                )
                pipe.zremrangebyscore(WORKERS_SEEN, "-inf", now - FORGET_AFTER_S)
                pipe.execute()
        except RedisError as exc:
            self.state.last_error = f"heartbeat not stored: {exc!r}"
            # Twice a second during an outage would drown the log: the first loss is the news.
            if not self._failing:
                log.warning("heartbeat lost", error=repr(exc))
            self._failing = True
        else:
            if self._failing:
                log.info("heartbeat back")
            self._failing = False
            self.state.last_ok_at = now

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                self.beat()
                self._stopped.wait(self._interval_s)
        finally:
            self.state.running = False


def _redis(settings: WorkerSettings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_socket_timeout_s,
    )


def register_stats(
    app: Celery,
    settings: WorkerSettings,
    queues: tuple[str, ...],
    *,
    timer: Callable[[], float] = time.monotonic,
) -> None:
    """Count every task's outcome and running time (on ``timer``) and beat while the worker
    runs, serving the health endpoint (:mod:`tripline.worker.health`) when
    ``WORKER_HEALTH_PORT`` is set.

    Signals are process-wide, so handlers are connected with a uid (a second app in the same
    process would not count twice) and only act for tasks of ``app``.
    """
    # Made on first use in each pool process: a Redis socket must not cross a fork.
    recorder = per_process(lambda: StatsRecorder(_redis(settings)))
    heartbeats: list[Heartbeat] = []
    servers: list[HealthServer] = []
    # Task id → when its current run started, in the process and thread that runs it (each
    # pool process has its own copy; prerun and postrun of one run are always paired there).
    started: dict[str, float] = {}

    def on_prerun(task_id: str | None = None, task: Task[Any, Any] | None = None, **_: Any) -> None:
        if task is not None and task.app is app and task_id is not None:
            started[task_id] = timer()

    def on_postrun(
        task_id: str | None = None,
        task: Task[Any, Any] | None = None,
        retval: object = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        if task is None or task.app is not app:
            return
        began = started.pop(task_id, None) if task_id is not None else None
        event = event_for(state, retval)
        queue = queue_of(task)
        if event is not None and queue is not None:
            ran_s = None if began is None else timer() - began
            recorder().record(queue, event, ran_s)

    def on_ready(sender: Any = None, **_: Any) -> None:
        node = str(getattr(sender, "hostname", "") or f"{settings.service_name}@unknown")
        info = WorkerInfo(
            node, queues, settings.worker_pool, settings.worker_concurrency, boot=BOOT_ID
        )
        heartbeat = Heartbeat(_redis(settings), info)
        heartbeat.start()
        heartbeats.append(heartbeat)
        if settings.worker_health_port is not None:
            server = HealthServer(settings.host, settings.worker_health_port, heartbeat.state)
            server.start()
            servers.append(server)

    def on_shutdown(**_: Any) -> None:
        while servers:
            servers.pop().stop()
        while heartbeats:
            heartbeats.pop().stop()

    task_prerun.connect(on_prerun, weak=False, dispatch_uid=f"tripline-start-{id(app)}")
    task_postrun.connect(on_postrun, weak=False, dispatch_uid=f"tripline-stats-{id(app)}")
    worker_ready.connect(on_ready, weak=False, dispatch_uid=f"tripline-ready-{id(app)}")
    worker_shutdown.connect(on_shutdown, weak=False, dispatch_uid=f"tripline-down-{id(app)}")
