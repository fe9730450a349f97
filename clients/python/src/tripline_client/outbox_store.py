"""The offline queue on disk: pending actions in submission order, and finished outcomes kept
``RETENTION_S`` so they can be read, and reported, after a restart. Sending them is
:mod:`tripline_client.outbox`'s job."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final

from tripline_client.actions import Action
from tripline_client.errors import CATALOGUE, TriplineError, error_class
from tripline_client.storage import StorageError

RETENTION_S: Final = 7 * 24 * 3600.0
"""How long a finished action's outcome is kept on disk: a week."""

# What an outcome's error keeps on disk besides its slug; ``detail`` first, as it is positional.
_ERROR_FIELDS: Final = ("detail", "status", "retry_after", "problem", "user_message")

_SCHEMA: Final = (
    # AUTOINCREMENT: a position is never reused, so the order of submission is the order of
    # the positions even after the queue has emptied.
    """CREATE TABLE IF NOT EXISTS outbox_pending (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        action TEXT NOT NULL,
        attempts INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_finished (
        id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        applied INTEGER NOT NULL,
        result TEXT,
        error TEXT,
        finished_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_finished_at ON outbox_finished (finished_at)",
)


@dataclass(frozen=True)
class Outcome:
    """How an action finished: ``applied`` with the platform's answer in ``result``, or not,
    with the error that ended it (a refusal, or the last transient failure when given up)."""

    action: Action
    applied: bool
    result: dict[str, Any] | None
    error: TriplineError | None
    finished_at: float


class OutboxStore:
    """The queue's two tables on an open SDK database (:func:`storage.open_database`).

    Each method commits before it returns and raises :class:`StorageError` when the database
    cannot be read or written. The caller owns the connection.
    """

    def __init__(self, connection: sqlite3.Connection, *, retention_s: float = RETENTION_S) -> None:
        self._db = connection
        self.retention_s = retention_s
        with _storage("create the offline queue"):
            for statement in _SCHEMA:
                self._db.execute(statement)

    def add(self, action: Action) -> bool:
        """Append ``action`` to the queue; ``False`` (and nothing written) when an action with
        its id is already pending or finished: the id, not the content, names an action."""
        with _storage("save the action"):
            cursor = self._db.execute(
                """INSERT INTO outbox_pending (id, action, attempts)
                SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM outbox_finished WHERE id = ?)
                ON CONFLICT (id) DO NOTHING""",
                (action.id, action.to_json(), action.attempts, action.id),
            )
        return cursor.rowcount == 1

    def head(self) -> Action | None:
        """The oldest pending action, or ``None`` when the queue is empty."""
        with _storage("read the queue"):
            row = self._db.execute(
                "SELECT action, attempts FROM outbox_pending ORDER BY position LIMIT 1"
            ).fetchone()
        return None if row is None else _pending_action(row)

    def pending(self) -> list[Action]:
        """Every pending action, oldest first."""
        with _storage("read the queue"):
            rows = self._db.execute(
                "SELECT action, attempts FROM outbox_pending ORDER BY position"
            ).fetchall()
        return [_pending_action(row) for row in rows]

    def record_attempt(self, action_id: str) -> int:
        """Count one more failed send of a pending action and return its count.

        Raises ``KeyError`` when no such action is pending.
        """
        with _storage("count the attempt"):
            self._db.execute(
                "UPDATE outbox_pending SET attempts = attempts + 1 WHERE id = ?", (action_id,)
            )
            row = self._db.execute(
                "SELECT attempts FROM outbox_pending WHERE id = ?", (action_id,)
            ).fetchone()
        if row is None:
            raise KeyError(action_id)
        return int(row[0])

    def finish(self, outcome: Outcome) -> None:
        """Move the outcome's action out of the queue into the finished outcomes, atomically."""
        action = outcome.action
        error = None if outcome.error is None else _error_record(outcome.error)
        result = None if outcome.result is None else json.dumps(outcome.result)
        with _storage("save the outcome"), self._transaction():
            self._db.execute("DELETE FROM outbox_pending WHERE id = ?", (action.id,))
            self._db.execute(
                "INSERT OR REPLACE INTO outbox_finished VALUES (?, ?, ?, ?, ?, ?)",
                (action.id, action.to_json(), outcome.applied, result, error, outcome.finished_at),
            )

    def outcome(self, action_id: str) -> Outcome | None:
        """The outcome of a finished action, ``None`` while it is pending, unknown or purged."""
        with _storage("read the outcome"):
            row = self._db.execute(
                "SELECT action, applied, result, error, finished_at FROM outbox_finished "
                "WHERE id = ?",
                (action_id,),
            ).fetchone()
            if row is None:
                return None
            return Outcome(
                action=Action.from_json(row[0]),
                applied=bool(row[1]),
                result=None if row[2] is None else json.loads(row[2]),
                error=None if row[3] is None else _error_from_record(row[3]),
                finished_at=float(row[4]),
            )

    def purge_expired(self, now: float) -> int:
        """Forget outcomes that finished more than ``retention_s`` before ``now``; how many."""
        with _storage("purge old outcomes"):
            cursor = self._db.execute(
                "DELETE FROM outbox_finished WHERE finished_at < ?", (now - self.retention_s,)
            )
        return cursor.rowcount

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


@contextmanager
def _storage(what: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, ValueError, TypeError) as error:
        # A ValueError or TypeError here is a row that no longer parses: the file was damaged.
        raise StorageError(f"could not {what}: {error}") from error


def _pending_action(row: tuple[str, int]) -> Action:
    with _storage("read the queue"):
        return replace(Action.from_json(row[0]), attempts=int(row[1]))


def _error_record(error: TriplineError) -> str:
    fields = {name: getattr(error, name) for name in _ERROR_FIELDS}
    return json.dumps({"slug": error.slug, **fields}, default=str)


def _error_from_record(text: str) -> TriplineError:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("an error record is a JSON object")
    error_type = _error_type(data.get("slug"), data.get("status"))
    return error_type(data.get("detail"), **{name: data.get(name) for name in _ERROR_FIELDS[1:]})


def _error_type(slug: str | None, status: int | None) -> type[TriplineError]:
    # The catalogue holds only the platform's problem types; errors the SDK makes itself
    # (network, timeout, storage) are found among TriplineError's subclasses by their slug.
    if slug is not None and slug not in CATALOGUE:
        for cls in _descendants(TriplineError):
            if cls.slug == slug:
                return cls
    if status is None:
        return CATALOGUE.get(slug or "", TriplineError)
    return error_class(slug, status)


def _descendants(cls: type[TriplineError]) -> Iterator[type[TriplineError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _descendants(sub)
