"""Writes accepted while MongoDB is away: queued durably in Redis, applied in order later.

A profile update or a trip status change that MongoDB cannot take is appended to the Redis
stream ``core:writes`` and answered 202 ``pending``. One replica at a time (it holds a lease)
replays the stream in order once MongoDB answers again, through the same code the API uses, and
deletes each entry once it is applied, so nothing accepted is lost.

Order per record: while a record (a user, a trip) has queued writes, its next writes are queued
behind them even if MongoDB is back, so a newer write is never overtaken by an older one. A
counter per record (``core:writes:pending:<record>``) says so; the enqueue and the removal of an
entry update it in the same script.

Nothing is applied twice: a status change carries its event id, which the trip's history
remembers; a profile update sets fields, so applying it again (after a crash between applying
and deleting it) leaves the same profile, and nothing newer can have been applied meanwhile. A
write that is no longer possible when replayed (the trip moved on meanwhile) is not applied; it
goes to ``core:writes:rejected`` with the reason, and is logged.

Checking the counter costs a Redis round trip per write; the client's guard refuses at once
after the first failure, so a hung Redis costs one timeout, and while Redis is away writes go
straight to MongoDB (nothing can be queued then either). That is the one case where order is
not kept: Redis and MongoDB failing in turn, with writes queued for the same record.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.errors import DependencyUnavailable, TriplineError
from tripline.common.lease import Lease
from tripline.common.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

STREAM = "core:writes"
REJECTED = "core:writes:rejected"
LEASE = "core:writes:lease"
IDEMPOTENCY_TTL_S = 86_400
REJECTED_MAX = 10_000
BATCH = 100

# KEYS: stream, the record's counter, the write's idempotency key. ARGV: its ttl (s), fields.
# Returns the entry's id, or the one an earlier identical write got.
_ENQUEUE = """
local earlier = redis.call('GET', KEYS[3])
if earlier then
  return earlier
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], id, 'EX', ARGV[1])
return id
"""

# KEYS: stream, the record's counter. ARGV: entry id.
_REMOVE = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 and redis.call('DECR', KEYS[2]) <= 0 then
  redis.call('DEL', KEYS[2])
end
return 1
"""


def counter_key(record: str) -> str:
    return f"core:writes:pending:{record}"


def idempotency_key(write_id: str) -> str:
    return f"core:writes:idem:{write_id}"


@dataclass(frozen=True)
class Write:
    """One write a client may replay: ``kind`` names its applier, ``record`` what it changes."""

    kind: str
    record: str
    write_id: str
    payload: Mapping[str, Any]

    def fields(self) -> list[str]:
        return [
            "kind",
            self.kind,
            "record",
            self.record,
            "write_id",
            self.write_id,
            "payload",
            json.dumps(self.payload, separators=(",", ":")),
        ]

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Write:
        """The write :meth:`fields` stored. Raises ``KeyError``/``ValueError`` otherwise."""
        return cls(
            kind=fields["kind"],
            record=fields["record"],
            write_id=fields["write_id"],
            payload=json.loads(fields["payload"]),
        )


@dataclass(frozen=True)
class Queued:
    """The answer to a write that was queued: 202 with this body."""

    write_id: str
    entry_id: str

    def body(self) -> dict[str, Any]:
        return {"status": "pending", "write_id": self.write_id}


Applier = Callable[[Write], Awaitable[None]]


class PendingWrites:
    """The queue of writes waiting for MongoDB, and this replica's share of replaying it.

    Each write kind needs an applier (:meth:`register`), the coroutine that applies it; it raises
    :class:`DependencyUnavailable` to stop the replay (tried again later) or another
    :class:`TriplineError` when the write is no longer possible (it is rejected).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        owner: str,
        lease_s: float = 10.0,
    ) -> None:
        self._redis = redis
        self._appliers: dict[str, Applier] = {}
        self._lease = Lease(redis, LEASE, owner=owner, ttl_s=lease_s)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._remove = redis.register_script(_REMOVE)

    def register(self, kind: str, applier: Applier) -> None:
        """Let queued writes of ``kind`` be replayed by ``applier``."""
        self._appliers[kind] = applier

    async def run_or_queue(
        self,
        write: Write,
        apply: Callable[[], Awaitable[T]],
        *,
        check: Callable[[], Awaitable[None]] | None = None,
    ) -> T | Queued:
        """Apply ``write`` now with ``apply()`` unless it must wait behind queued writes of its
        record or MongoDB does not answer; then ``check()`` it (raising what a client must hear
        now) and queue it, returning :class:`Queued`.

        Raises what ``apply`` and ``check`` raise, except MongoDB not answering; raises
        :class:`DependencyUnavailable` when the write had to be queued and Redis refused it.
        """
        if not await self._has_queued(write.record):
            try:
                return await apply()
            except DependencyUnavailable as exc:
                if exc.dependency != "mongodb":
                    raise
                log.warning(
                    "write queued: MongoDB unavailable", kind=write.kind, record=write.record
                )
        if check is not None:
            await check()
        return await self.queue(write)

    async def queue(self, write: Write) -> Queued:
        """Append ``write`` durably (once per ``write_id``). Raises
        :class:`DependencyUnavailable` when Redis does not take it."""
        try:
            entry_id = await self._enqueue(
                keys=[STREAM, counter_key(write.record), idempotency_key(write.write_id)],
                args=[IDEMPOTENCY_TTL_S, *write.fields()],
            )
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("mongodb", "neither MongoDB nor Redis answers") from exc
        return Queued(write_id=write.write_id, entry_id=_text(entry_id))

    async def run(self, interval_s: float) -> None:
        """Replay the queue every ``interval_s`` while this replica holds the lease; forever."""
        while True:
            try:
                await self.replay()
            except (RedisError, OSError) as exc:
                log.warning("pending writes not replayed: Redis unavailable", error=repr(exc))
            await asyncio.sleep(interval_s)

    async def replay(self) -> int:
        """Apply queued writes in order until the queue is empty or MongoDB stops answering;
        returns how many entries were settled (applied or rejected). Raises ``RedisError``."""
        settled = 0
        while await self._lease.hold():
            entries = await self._redis.xrange(STREAM, count=BATCH)
            if not entries:
                return settled
            for entry_id, raw in entries:
                if entry_id is None or raw is None:
                    continue
                if not await self._settle(_text(entry_id), raw):
                    return settled
                settled += 1
        return settled

    async def _settle(self, entry_id: str, raw: Mapping[Any, Any]) -> bool:
        fields = {_text(name): _text(value) for name, value in raw.items()}
        try:
            write = Write.from_fields(fields)
            applier = self._appliers[write.kind]
        except (KeyError, ValueError):
            log.exception("unreadable pending write rejected", entry_id=entry_id, fields=fields)
            await self._reject(entry_id, fields, "unreadable entry")
            return True
        try:
            await applier(write)
        except DependencyUnavailable:
            return False
        except TriplineError as exc:
            log.warning(
                "pending write rejected", kind=write.kind, record=write.record, reason=str(exc)
            )
            await self._reject(entry_id, fields, str(exc))
            return True
        await self._remove(keys=[STREAM, counter_key(write.record)], args=[entry_id])
        return True

    async def _reject(self, entry_id: str, fields: Mapping[str, str], reason: str) -> None:
        rejected = {**fields, "reason": reason, "entry_id": entry_id}
        await self._redis.xadd(REJECTED, rejected, maxlen=REJECTED_MAX)  # type: ignore[arg-type]
        record = counter_key(fields.get("record", ""))
        await self._remove(keys=[STREAM, record], args=[entry_id])

    async def _has_queued(self, record: str) -> bool:
        try:
            queued = await self._redis.exists(counter_key(record))
        except (RedisError, OSError) as exc:
            log.warning("pending writes not checked: Redis unavailable", error=repr(exc))
            return False
        return bool(queued)


def new_write_id(user_id: str, idempotency_key: str | None) -> str:
    """The write's id: its client's idempotency key (per user), else a fresh one."""
    return f"{user_id}:{idempotency_key or uuid.uuid4().hex}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
