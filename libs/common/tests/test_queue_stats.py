"""Key names, bucket arithmetic and the envelopes the worker and kombu write, read back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.transport.redis import PRIORITY_STEPS, Channel

from tripline.common.queue_stats import (
    BUCKET_S,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TTL_S,
    SENT_AT_HEADER,
    QueueConsumers,
    TaskEvent,
    WorkerInfo,
    bucket_key,
    bucket_of,
    busy_key,
    consumers_by_queue,
    count_by_queue,
    in_flight_queue,
    live_workers,
    queue_keys,
    seconds_per_task,
    sent_at,
    total_key,
    worker_info_key,
)
from tripline.common.queues import Queue

NOW = 1_700_000_005.0  # bucket 170_000_000, five seconds in


def envelope(headers: object) -> str:
    """A broker message as kombu's Redis transport stores it (only the parts read here)."""
    return json.dumps(
        {
            "body": "W1tdLCB7fSwge31d",
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {"delivery_tag": "t1"},
        }
    )


@pytest.mark.parametrize(
    ("timestamp", "bucket"),
    [(0.0, 0), (9.999, 0), (10.0, 1), (NOW, 170_000_000), (NOW + 4.999, 170_000_000)],
)
def test_a_timestamp_falls_in_the_bucket_of_its_ten_seconds(timestamp: float, bucket: int) -> None:
    assert bucket_of(timestamp) == bucket


@given(st.floats(0, 4e9))
def test_a_bucket_starts_at_most_ten_seconds_before_its_timestamps(timestamp: float) -> None:
    start = bucket_of(timestamp) * BUCKET_S
    assert start <= timestamp < start + BUCKET_S


def test_keys_name_the_queue_the_event_and_the_bucket_or_total() -> None:
    assert bucket_key(Queue.DOCUMENTS, TaskEvent.FAILED, 17) == "stats:documents:failed:17"
    assert bucket_key("documents", TaskEvent.FAILED, 17) == "stats:documents:failed:17"
    assert total_key(Queue.PAYMENTS, TaskEvent.RETRIED) == "stats:payments:retried:total"
    assert total_key("payments", TaskEvent.PROCESSED) == "stats:payments:processed:total"
    assert worker_info_key("worker@a") == "workers:info:worker@a"
    assert busy_key(Queue.DOCUMENTS, 17) == "stats:documents:busy_ms:17"


def test_a_queue_has_one_list_per_priority_level_the_first_named_after_it() -> None:
    keys = queue_keys(Queue.DOCUMENTS)
    assert keys[0] == "documents"
    assert "documents\x06\x163" in keys
    assert len(set(keys)) == 10


@pytest.mark.parametrize("steps", [PRIORITY_STEPS, list(range(10))])
def test_the_queue_keys_cover_every_list_kombu_publishes_to(steps: list[int]) -> None:
    class Naming:
        """kombu's own naming of a queue's priority lists, without a connection."""

        sep = Channel.sep
        priority_steps = steps
        priority = Channel.priority
        q_for_pri = Channel._q_for_pri  # type: ignore[attr-defined]

    kombu_keys = {Naming().q_for_pri("documents", priority) for priority in range(256)}
    assert kombu_keys <= set(queue_keys("documents"))


def test_worker_info_reads_back_what_it_writes() -> None:
    info = WorkerInfo("worker@a", ("documents", "system"), "threads", 4)
    assert WorkerInfo.from_json("worker@a", info.to_json()) == info
    assert WorkerInfo.from_json("worker@a", info.to_json().encode()) == info


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\xff\xfe",
        "[]",
        '"documents"',
        "null",
        json.dumps({"pool": "threads", "concurrency": 4}),
        json.dumps({"queues": ["documents"], "concurrency": 4}),
        json.dumps({"queues": ["documents"], "pool": "threads", "concurrency": "many"}),
        json.dumps({"queues": ["documents"], "pool": "threads", "concurrency": None}),
        json.dumps({"queues": 3, "pool": "threads", "concurrency": 4}),
    ],
)
def test_worker_info_is_none_for_anything_a_worker_does_not_write(raw: str | bytes) -> None:
    assert WorkerInfo.from_json("worker@a", raw) is None


def test_the_publish_time_is_read_from_the_message_headers() -> None:
    raw = envelope({"task": "tripline.documents.process", SENT_AT_HEADER: NOW})
    assert sent_at(raw) == NOW
    assert sent_at(raw.encode()) == NOW
    assert sent_at(envelope({SENT_AT_HEADER: str(NOW)})) == NOW


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "not json",
        b"\xff\xfe",
        "[1, 2]",
        envelope({"task": "tripline.documents.process"}),
        envelope(None),
        envelope({SENT_AT_HEADER: "yesterday"}),
        envelope({SENT_AT_HEADER: None}),
        json.dumps({"body": "", "properties": {}}),
    ],
)
def test_a_message_without_a_readable_publish_time_has_none(raw: str | bytes | None) -> None:
    assert sent_at(raw) is None


def test_an_unacked_entry_names_its_queue_by_routing_key() -> None:
    message = json.loads(envelope({SENT_AT_HEADER: NOW}))
    assert in_flight_queue(json.dumps([message, "", "documents"])) == "documents"
    assert in_flight_queue(json.dumps([message, "documents", "payments"]).encode()) == "payments"


@pytest.mark.parametrize("raw", ["not json", b"\xff", "[]", '[{}, ""]', "{}", "7", "null"])
def test_an_unreadable_unacked_entry_has_no_queue(raw: str | bytes) -> None:
    assert in_flight_queue(raw) is None


def test_in_flight_messages_are_counted_for_the_asked_queues_only() -> None:
    def entry(queue: str) -> str:
        return json.dumps([{"headers": {}}, "", queue])

    entries: list[str | bytes] = [
        entry("documents"),
        entry("documents").encode(),
        entry("payments"),
        entry("celery"),
        "garbage",
    ]
    assert count_by_queue(entries, ["documents", "payments", "system"]) == {
        "documents": 2,
        "payments": 1,
        "system": 0,
    }
    assert count_by_queue([], ["documents"]) == {"documents": 0}


def test_worker_info_whose_queues_are_one_string_is_not_what_a_worker_writes() -> None:
    # A worker writes a list of queue names; a bare string must not read as one queue per letter.
    raw = json.dumps({"queues": "documents", "pool": "threads", "concurrency": 4})
    assert WorkerInfo.from_json("worker@a", raw) is None


def test_a_live_worker_survives_late_beats_and_a_dead_one_is_gone_within_two_looks() -> None:
    # Three beats in a row may be late before a live worker's key expires...
    assert HEARTBEAT_TTL_S >= 4 * HEARTBEAT_INTERVAL_S
    # ...and a dead one's key is gone before the monitor's second look (2 s apart by default).
    assert HEARTBEAT_TTL_S <= 2.0


def test_live_workers_are_those_whose_info_was_still_there() -> None:
    documents = WorkerInfo("worker@d", ("documents",), "threads", 10)
    general = WorkerInfo("worker@g", ("system", "payments"), "prefork", 2)
    nodes = ["worker@d", "worker@expired", "worker@g", "worker@garbled"]
    raw = [documents.to_json(), None, general.to_json().encode(), "not json"]
    assert live_workers(nodes, raw) == [documents, general]
    assert live_workers([], []) == []


def test_each_asked_queue_counts_its_live_consumers_and_their_concurrency() -> None:
    workers = [
        WorkerInfo("worker@d1", ("documents",), "threads", 10),
        WorkerInfo("worker@d2", ("documents", "notifications"), "threads", 4),
        # A queue named twice is consumed once.
        WorkerInfo("worker@g", ("system", "system", "celery"), "prefork", 2),
    ]
    assert consumers_by_queue(workers, ["documents", "notifications", "system", "payments"]) == {
        "documents": QueueConsumers(workers=2, slots=14),
        "notifications": QueueConsumers(workers=1, slots=4),
        "system": QueueConsumers(workers=1, slots=2),
        "payments": QueueConsumers(workers=0, slots=0),
    }
    assert consumers_by_queue([], ["documents"]) == {"documents": QueueConsumers(0, 0)}


@pytest.mark.parametrize(
    ("busy", "runs", "seconds"),
    [
        (["3000", None, b"1000"], ["2", "1", None, b"1"], 1.0),
        ([500], [1], 0.5),
        ([None, None], [None], None),
        (["4000"], [None, "0"], None),  # time without runs: nothing to divide
        ([None], ["3"], None),  # runs without time (a worker that times nothing): unknown
    ],
)
def test_the_time_per_task_is_busy_time_over_runs(
    busy: list[object], runs: list[object], seconds: float | None
) -> None:
    assert seconds_per_task(busy, runs) == seconds
