"""The offline queue's tables: what is written, read back and refused as damaged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tripline_client import actions
from tripline_client.actions import Action
from tripline_client.errors import (
    Conflict,
    InvalidRequest,
    NetworkError,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
    TriplineError,
)
from tripline_client.outbox_store import OutboxStore, Outcome
from tripline_client.storage import StorageError, open_database


def sos(action_id: str) -> Action:
    return actions.sos("trip-1", 52.5, 13.4, "help", id=action_id, now=1_700_000_000.0)


@pytest.mark.parametrize(
    "error",
    [
        NetworkError(),
        RequestTimeout("no answer in 10 s"),
        ServiceUnavailable("busy", status=503, retry_after=2.0),
        RateLimited("slow down", status=429, retry_after=30.0),
        StorageError("disk full"),
        Conflict("moved on", status=409, problem={"trace_id": "t1"}),
        NotFound(status=404),
        InvalidRequest("teapot", status=418),
    ],
    ids=repr,
)
def test_a_stored_error_is_rebuilt_as_it_was(tmp_path: Path, error: TriplineError) -> None:
    connection = open_database(tmp_path)
    OutboxStore(connection).finish(Outcome(sos("a"), False, None, error, 5.0))
    connection.close()
    connection = open_database(tmp_path)
    outcome = OutboxStore(connection).outcome("a")
    connection.close()
    assert outcome is not None
    rebuilt = outcome.error
    assert isinstance(rebuilt, type(error))
    assert (rebuilt.slug, rebuilt.transient) == (error.slug, error.transient)
    assert vars(rebuilt) == vars(error)


def test_the_schema_is_created_once(connection: sqlite3.Connection) -> None:
    OutboxStore(connection).add(sos("a"))
    assert OutboxStore(connection).pending() == [sos("a")]


def test_an_id_is_added_once(store: OutboxStore) -> None:
    assert store.add(sos("a"))
    assert not store.add(actions.trip_status("trip-1", "accepted", id="a", now=1.0))
    assert store.pending() == [sos("a")]


def test_counting_an_attempt_needs_a_pending_action(store: OutboxStore) -> None:
    with pytest.raises(KeyError):
        store.record_attempt("nothing")


def test_a_closed_database_is_a_storage_error(tmp_path: Path) -> None:
    connection = open_database(tmp_path)
    store = OutboxStore(connection)
    connection.close()
    with pytest.raises(StorageError, match="save the action"):
        store.add(sos("a"))
    with pytest.raises(StorageError):
        OutboxStore(connection)


def test_a_damaged_row_is_a_storage_error(
    store: OutboxStore, connection: sqlite3.Connection
) -> None:
    store.add(sos("a"))
    connection.execute("UPDATE outbox_pending SET action = 'garbage'")
    with pytest.raises(StorageError, match="read the queue"):
        store.head()
