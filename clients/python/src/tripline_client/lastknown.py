"""The last location this device saw for each trip, kept on disk.

A map that goes dark when the network does is worse than one showing where the car was a moment
ago: the live subscription and the REST latest location both save here, and both serve from
here while the platform cannot be reached. A location only replaces an older one, so a late
answer or a replayed event never moves the car back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tripline_client.storage import StorageError

_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS last_known_locations (
    trip_id TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    seq INTEGER,
    ts REAL,
    saved_at REAL NOT NULL
)"""

# Newer means a higher seq when both have one (the trip's own order), else a later point time;
# a location that can be compared by neither replaces what is there.
_SAVE: Final = """INSERT INTO last_known_locations (trip_id, location, seq, ts, saved_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (trip_id) DO UPDATE SET
    location = excluded.location, seq = excluded.seq, ts = excluded.ts,
    saved_at = excluded.saved_at
WHERE CASE
    WHEN excluded.seq IS NOT NULL AND last_known_locations.seq IS NOT NULL
        THEN excluded.seq > last_known_locations.seq
    WHEN excluded.ts IS NOT NULL AND last_known_locations.ts IS NOT NULL
        THEN excluded.ts > last_known_locations.ts
    ELSE 1
END"""


@dataclass(frozen=True)
class LastKnown:
    location: dict[str, Any]
    seq: int | None
    saved_at: float
    """When this device saved it (epoch seconds, the store's clock)."""


class LastKnownStore:
    """Last known locations in the SDK's database (see :func:`storage.open_database`); the
    caller keeps owning the connection. Every method raises :class:`StorageError` when the file
    cannot be read or written."""

    def __init__(
        self, connection: sqlite3.Connection, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._connection = connection
        self._clock = clock
        try:
            connection.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise StorageError(f"cannot create the last known locations table: {error}") from error

    def save(self, trip_id: str, location: Mapping[str, Any], seq: int | None) -> bool:
        """Keep ``location`` (JSON-able) as the trip's last known one, unless the one on disk is
        newer: a higher ``seq``, or when either has no ``seq`` a later ``ts``. Returns whether
        it was stored; committed on return."""
        text = json.dumps(dict(location), separators=(",", ":"))
        try:
            cursor = self._connection.execute(
                _SAVE, (trip_id, text, _number(seq), _number(location.get("ts")), self._clock())
            )
        except sqlite3.Error as error:
            raise StorageError(f"cannot save the last known location: {error}") from error
        return cursor.rowcount > 0

    def get(self, trip_id: str) -> dict[str, Any] | None:
        """The trip's last known location as it was saved, or ``None`` when none was."""
        entry = self.entry(trip_id)
        return None if entry is None else entry.location

    def entry(self, trip_id: str) -> LastKnown | None:
        """The trip's last known location with its ``seq`` and when it was saved."""
        try:
            row = self._connection.execute(
                "SELECT location, seq, saved_at FROM last_known_locations WHERE trip_id = ?",
                (trip_id,),
            ).fetchone()
        except sqlite3.Error as error:
            raise StorageError(f"cannot read the last known location: {error}") from error
        if row is None:
            return None
        try:
            location = json.loads(row[0])
        except ValueError as error:
            raise StorageError("the last known location on disk is unreadable") from error
        if not isinstance(location, dict):
            raise StorageError("the last known location on disk is unreadable")
        return LastKnown(location=location, seq=row[1], saved_at=row[2])


def _number(value: object) -> float | None:
    # Callers pass fields of server JSON: anything not a plain number cannot order locations.
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
