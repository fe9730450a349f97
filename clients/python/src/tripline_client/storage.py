"""The SDK's one SQLite file on disk, shared by the offline queue and the last known locations.

Every write is committed before the call that made it returns, with ``synchronous=FULL`` in WAL
mode: an action the SDK accepted survives the app being killed, or the phone losing power, the
moment after. The writes are small (one row), so they run on the caller's thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tripline_client.errors import TriplineError

DATABASE_NAME = "tripline-client.sqlite3"


class StorageError(TriplineError):
    """The SDK's file on disk could not be opened or written (full disk, no permission)."""

    slug = "storage-error"
    default_message = "Your phone's storage is full or unavailable, so this was not saved."


def open_database(data_dir: Path) -> sqlite3.Connection:
    """Open (creating when needed) the SDK's database in ``data_dir``.

    Raises :class:`StorageError` when the directory or file cannot be used. The caller owns the
    connection and must close it.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            data_dir / DATABASE_NAME, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
    except (OSError, sqlite3.Error) as error:
        raise StorageError(f"cannot open the SDK database in {data_dir}: {error}") from error
    return connection
