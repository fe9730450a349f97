import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tripline_client.lastknown import LastKnownStore
from tripline_client.storage import StorageError, open_database


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(tmp_path)
    yield connection
    connection.close()


def point(seq: int | None, ts: float | None = 100.0, lat: float = 52.5) -> dict[str, Any]:
    return {"lat": lat, "lng": 13.4, "ts": ts, "heading": None, "speed": None, "seq": seq}


def test_nothing_is_known_of_a_trip_never_seen(connection: sqlite3.Connection) -> None:
    assert LastKnownStore(connection).get("t1") is None


def test_a_newer_seq_replaces_and_an_older_one_does_not(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection)
    assert store.save("t1", point(5, lat=1.0), 5)
    assert store.save("t1", point(7, lat=2.0), 7)
    assert not store.save("t1", point(6, lat=3.0), 6)
    assert not store.save("t1", point(7, lat=4.0), 7)
    assert store.get("t1") == point(7, lat=2.0)


def test_without_a_seq_the_point_time_decides(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection)
    assert store.save("t1", point(None, ts=100.0, lat=1.0), None)
    assert not store.save("t1", point(None, ts=90.0, lat=2.0), None)
    assert store.save("t1", point(None, ts=110.0, lat=3.0), None)
    assert not store.save("t1", point(9, ts=105.0, lat=4.0), 9)
    assert store.get("t1") == point(None, ts=110.0, lat=3.0)


def test_a_location_that_cannot_be_ordered_replaces(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection)
    store.save("t1", point(None, ts=None, lat=1.0), None)
    assert store.save("t1", point(None, ts=None, lat=2.0), None)
    assert store.get("t1") == point(None, ts=None, lat=2.0)


def test_fields_that_are_not_numbers_do_not_order(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection)
    store.save("t1", {"lat": 1.0, "ts": 100.0}, 5)
    assert store.save("t1", {"lat": 2.0, "ts": 200.0}, True)
    assert store.save("t1", {"lat": 3.0, "ts": "later"}, None)
    assert store.get("t1") == {"lat": 3.0, "ts": "later"}


def test_trips_are_kept_apart(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection)
    store.save("t1", point(3, lat=1.0), 3)
    store.save("t2", point(1, lat=2.0), 1)
    assert store.get("t1") == point(3, lat=1.0)
    assert store.get("t2") == point(1, lat=2.0)


def test_the_entry_says_when_it_was_saved(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection, clock=lambda: 1234.5)
    store.save("t1", point(3), 3)
    entry = store.entry("t1")
    assert entry is not None
    assert (entry.location, entry.seq, entry.saved_at) == (point(3), 3, 1234.5)


def test_the_last_known_location_survives_a_restart(tmp_path: Path) -> None:
    first = open_database(tmp_path)
    LastKnownStore(first).save("t1", point(4), 4)
    first.close()
    second = open_database(tmp_path)
    try:
        store = LastKnownStore(second)
        assert store.get("t1") == point(4)
        assert not store.save("t1", point(3), 3)
    finally:
        second.close()


def test_a_broken_database_is_a_storage_error(tmp_path: Path) -> None:
    connection = open_database(tmp_path)
    store = LastKnownStore(connection)
    connection.close()
    with pytest.raises(StorageError):
        store.save("t1", point(1), 1)
    with pytest.raises(StorageError):
        store.get("t1")
    with pytest.raises(StorageError):
        LastKnownStore(connection)


def test_an_unreadable_row_is_a_storage_error(connection: sqlite3.Connection) -> None:
    store = LastKnownStore(connection)
    connection.execute(
        "INSERT INTO last_known_locations (trip_id, location, saved_at) VALUES ('t1', '[1]', 0)"
    )
    with pytest.raises(StorageError):
        store.get("t1")
