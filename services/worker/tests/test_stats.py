"""Task outcomes and heartbeats as the worker writes them, on a real redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

import pytest
from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from redis import Redis
from structlog.testing import capture_logs

from tripline.common.queue_stats import (
    BUCKET_TTL_S,
    GAVE_UP,
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
from tripline.common.queues import Task as TaskName
from tripline.devstack.fakes import FakeClock, StepClock
from tripline.devstack.harness import Server, scaled
from tripline.worker import documents, notifications, payments
from tripline.worker.settings import WorkerSettings
from tripline.worker.stats import (
    FORGET_AFTER_S,
    Heartbeat,
    StatsRecorder,
    busy_ms,
    event_for,
    queue_of,
    register_stats,
)

NOW = 1_700_000_005.0
INFO = WorkerInfo("worker@a", ("documents", "system"), "threads", 4)


@pytest.fixture
def redis(fresh_redis: Server) -> Iterator[Redis]:
    client = Redis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=scaled(5))
    try:
        yield client
    finally:
        client.close()


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + scaled(5)
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.01)


def number(raw: Any) -> int | None:
    return None if raw is None else int(raw)


@pytest.mark.parametrize(
    ("state", "retval", "event"),
    [
        ("SUCCESS", None, TaskEvent.PROCESSED),
        ("SUCCESS", "verified", TaskEvent.PROCESSED),
        ("SUCCESS", "pong", TaskEvent.PROCESSED),
        ("SUCCESS", GAVE_UP, TaskEvent.FAILED),
        ("SUCCESS", documents.Outcome.GAVE_UP, TaskEvent.FAILED),
        ("FAILURE", ValueError("boom"), TaskEvent.FAILED),
        ("RETRY", None, TaskEvent.RETRIED),
        ("REVOKED", None, None),
        ("IGNORED", None, None),
        ("REJECTED", None, None),
        ("STARTED", None, None),
        (None, None, None),
    ],
)
def test_each_final_state_counts_as_its_outcome(
    state: str | None, retval: object, event: TaskEvent | None
) -> None:
    assert event_for(state, retval) is event


@pytest.mark.parametrize("outcome", [documents.Outcome, notifications.Outcome, payments.Outcome])
def test_every_task_gives_up_with_the_value_counted_as_failed(outcome: type[StrEnum]) -> None:
    assert GAVE_UP in {member.value for member in outcome}
    assert event_for("SUCCESS", outcome(GAVE_UP).value) is TaskEvent.FAILED


def test_a_task_counts_on_its_queue_by_name_or_else_by_routing_key() -> None:
    app = Celery("stats-test", set_as_current=False)

    @app.task(name=TaskName.CONFIRM_PAYMENT.value)
    def confirm() -> None:
        return None

    @app.task(name="someone.else")
    def other() -> None:
        return None

    assert queue_of(confirm) == "payments"
    assert queue_of(other) is None
    other.push_request(delivery_info={"routing_key": "documents"})
    try:
        assert queue_of(other) == "documents"
    finally:
        other.pop_request()


@pytest.mark.integration
def test_outcomes_count_in_their_ten_second_bucket_and_the_running_total(redis: Redis) -> None:
    clock = FakeClock(NOW)
    recorder = StatsRecorder(redis, clock=clock)
    recorder.record("documents", TaskEvent.PROCESSED)
    recorder.record("documents", TaskEvent.PROCESSED)
    recorder.record("documents", TaskEvent.FAILED)
    clock.advance(10)
    recorder.record("documents", TaskEvent.PROCESSED)
    recorder.record("payments", TaskEvent.RETRIED)

    first, second = bucket_of(NOW), bucket_of(NOW + 10)
    assert second == first + 1
    assert number(redis.get(bucket_key("documents", TaskEvent.PROCESSED, first))) == 2
    assert number(redis.get(bucket_key("documents", TaskEvent.PROCESSED, second))) == 1
    assert number(redis.get(bucket_key("documents", TaskEvent.FAILED, first))) == 1
    assert number(redis.get(bucket_key("payments", TaskEvent.RETRIED, second))) == 1
    assert number(redis.get(total_key("documents", TaskEvent.PROCESSED))) == 3
    assert number(redis.get(total_key("documents", TaskEvent.FAILED))) == 1
    assert number(redis.get(total_key("payments", TaskEvent.RETRIED))) == 1
    assert redis.get(total_key("payments", TaskEvent.PROCESSED)) is None

    bucket_ttl = redis.ttl(bucket_key("documents", TaskEvent.PROCESSED, first))
    assert BUCKET_TTL_S - 60 < bucket_ttl <= BUCKET_TTL_S
    # Totals run for ever: they are what failed_total and processed_total report.
    assert redis.ttl(total_key("documents", TaskEvent.PROCESSED)) == -1


@pytest.mark.integration
def test_an_outcome_redis_cannot_take_is_logged_and_dropped(
    fresh_redis: Server, redis: Redis
) -> None:
    fresh_redis.stop()
    recorder = StatsRecorder(redis, clock=FakeClock(NOW))
    with capture_logs() as logs:
        recorder.record("documents", TaskEvent.PROCESSED)
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("task outcome not counted", "warning")
    ]
    assert logs[0]["queue"] == "documents"


@pytest.mark.integration
def test_a_beat_records_the_node_its_info_and_forgets_nodes_gone_an_hour(redis: Redis) -> None:
    redis.zadd(
        WORKERS_SEEN,
        {"worker@long-gone": NOW - FORGET_AFTER_S - 1, "worker@recent": NOW - FORGET_AFTER_S + 1},
    )
    Heartbeat(redis, INFO, clock=FakeClock(NOW)).beat()

    assert redis.zscore(WORKERS_SEEN, "worker@a") == NOW
    assert redis.zscore(WORKERS_SEEN, "worker@recent") == NOW - FORGET_AFTER_S + 1
    assert redis.zscore(WORKERS_SEEN, "worker@long-gone") is None
    raw = redis.get(worker_info_key("worker@a"))
    assert raw is not None
    assert WorkerInfo.from_json("worker@a", raw) == INFO
    # The info is the node's liveness: it lives HEARTBEAT_TTL_S after each beat, no longer.
    assert redis.pttl(worker_info_key("worker@a")) > HEARTBEAT_TTL_S * 1000 - 500
    assert redis.pttl(worker_info_key("worker@a")) <= HEARTBEAT_TTL_S * 1000


@pytest.mark.integration
def test_the_heartbeat_beats_until_stopped_then_says_goodbye(redis: Redis) -> None:
    clock = FakeClock(NOW)
    heartbeat = Heartbeat(redis, INFO, interval_s=0.02, clock=clock)
    heartbeat.start()
    try:
        eventually(lambda: redis.zscore(WORKERS_SEEN, "worker@a") == NOW, "a first beat")
        clock.advance(10)
        eventually(lambda: redis.zscore(WORKERS_SEEN, "worker@a") == NOW + 10, "a later beat")
    finally:
        heartbeat.stop()
    assert redis.zscore(WORKERS_SEEN, "worker@a") is None
    assert redis.get(worker_info_key("worker@a")) is None
    assert "heartbeat" not in {thread.name for thread in threading.enumerate()}


@pytest.mark.integration
def test_a_heartbeat_without_redis_logs_the_loss_once_and_the_return(
    fresh_redis: Server, redis: Redis
) -> None:
    fresh_redis.stop()
    heartbeat = Heartbeat(redis, INFO, clock=FakeClock(NOW))
    with capture_logs() as logs:
        heartbeat.beat()
        heartbeat.beat()
        fresh_redis.start()
        heartbeat.beat()
        heartbeat.beat()
    assert [entry["event"] for entry in logs] == ["heartbeat lost", "heartbeat back"]
    assert heartbeat.state.last_ok_at == NOW
    assert redis.get(worker_info_key("worker@a")) is not None


@pytest.mark.integration
def test_a_registered_app_counts_its_tasks_outcomes_on_their_queues(
    fresh_redis: Server, redis: Redis
) -> None:
    settings = WorkerSettings(redis_url=f"redis://127.0.0.1:{fresh_redis.port}/0")
    app = Celery("stats-test", set_as_current=False)
    app.conf.task_always_eager = True

    @app.task(name=TaskName.PROCESS_DOCUMENT.value)
    def process(outcome: str) -> str:
        return outcome

    @app.task(name=TaskName.SEND_NOTIFICATION.value)
    def send() -> None:
        raise RuntimeError("the provider broke")

    # Every run takes exactly half a second on this timer.
    register_stats(app, settings, ("documents", "notifications"), timer=StepClock(0.5))
    try:
        process.apply(args=("verified",))
        process.apply(args=("verified",))
        process.apply(args=(GAVE_UP,))
        send.apply()
    finally:
        task_prerun.disconnect(dispatch_uid=f"tripline-start-{id(app)}")
        task_postrun.disconnect(dispatch_uid=f"tripline-stats-{id(app)}")
        worker_ready.disconnect(dispatch_uid=f"tripline-ready-{id(app)}")
        worker_shutdown.disconnect(dispatch_uid=f"tripline-down-{id(app)}")

    assert number(redis.get(total_key("documents", TaskEvent.PROCESSED))) == 2
    assert number(redis.get(total_key("documents", TaskEvent.FAILED))) == 1
    assert number(redis.get(total_key("notifications", TaskEvent.FAILED))) == 1
    assert redis.get(total_key("notifications", TaskEvent.PROCESSED)) is None

    now = bucket_of(time.time())

    def busy(queue: str) -> int:
        # The runs may straddle two buckets.
        return sum(number(redis.get(busy_key(queue, bucket))) or 0 for bucket in (now - 1, now))

    assert busy("documents") == 3 * 500
    assert busy("notifications") == 500


@pytest.mark.parametrize(
    ("seconds", "milliseconds"), [(0.25, 250), (1.0001, 1001), (0.0, 1), (0.00001, 1)]
)
def test_a_run_is_busy_for_its_time_in_whole_milliseconds_at_least_one(
    seconds: float, milliseconds: int
) -> None:
    assert busy_ms(seconds) == milliseconds


@pytest.mark.integration
def test_a_run_s_time_adds_up_in_its_bucket_beside_its_outcome(redis: Redis) -> None:
    clock = FakeClock(NOW)
    recorder = StatsRecorder(redis, clock=clock)
    recorder.record("documents", TaskEvent.PROCESSED, 0.25)
    recorder.record("documents", TaskEvent.RETRIED, 1.5)
    recorder.record("documents", TaskEvent.PROCESSED)  # not timed: counted, adds no time

    key = busy_key("documents", bucket_of(NOW))
    assert number(redis.get(key)) == 1750
    assert BUCKET_TTL_S - 60 < redis.ttl(key) <= BUCKET_TTL_S
    assert number(redis.get(bucket_key("documents", TaskEvent.PROCESSED, bucket_of(NOW)))) == 2
