"""Fixtures shared by the SDK's tests: an SDK database in the test's own directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tripline_client.outbox_store import OutboxStore
from tripline_client.storage import open_database


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(tmp_path)
    yield connection
    connection.close()


@pytest.fixture
def store(connection: sqlite3.Connection) -> OutboxStore:
    return OutboxStore(connection)
