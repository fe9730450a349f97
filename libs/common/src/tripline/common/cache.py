"""A cache-aside read path: a small in-process layer in front of Redis, in front of the database.

:meth:`TwoLayerCache.get` answers from the local layer, else from Redis, else from the caller's
loader (the database), storing the loaded value in both layers. Concurrent misses for one key in
one process share one Redis read and one loader call. :meth:`TwoLayerCache.invalidate`, called
after a database write is acknowledged, drops the key from Redis and, through one pub/sub channel
per namespace, from the local layer of every replica. Values are JSON; ``None`` (no such record)
is never cached, because records appear without an invalidation (a created trip) and a cached
absence would hide them.

Guarantee: in one process, a ``get`` that starts after ``invalidate`` returned never answers with
a value loaded before the write, whatever reads, invalidations and Redis failures interleave,
provided the loader reads its own writes (the primary, not a lagging secondary). How:

* Stale fill. A reader may load the old value, lose the race to a writer, and store it after the
  invalidation. Redis keeps a generation per key: the invalidation script deletes the value and
  increments the generation in one step, and the store script sets the value only if the
  generation is still the one the reader saw before loading. In process, an invalidation marks
  the key's load in progress stale (it stores nothing) and detaches it, so later readers start
  their own. Until Redis has acknowledged the invalidation the key counts as dirty (below), so a
  reader arriving meanwhile sends the invalidation itself before reading Redis.
* Redis failing. Every command is bounded by ``redis_timeout_s``; a failure answers from the
  loader (``FALLBACK``, never an error). The client's guard (:mod:`tripline.common.redis_client`)
  is the one place that decides whether Redis is tried: a command that times out here trips it,
  so does any failure the client sees, and while it is open every command is refused at once
  until its probe finds Redis again: a hung Redis costs one timeout, not one per call. An
  invalidation that cannot reach Redis marks the key dirty: reads of a dirty key bypass Redis
  until the invalidation is retried successfully (before any read of that key, and whenever the
  listener subscribes). Other replicas may serve their Redis copy until then, at most ``ttl_s``.
* The local layer is used only while the listener is subscribed and Redis answers. It is cleared
  whenever either changes (an invalidation may have been missed), and a load that began before
  such a change stores nothing. The listener pings the channel to notice a hung Redis. A replica
  that misses a peer's message serves its local copy for at most ``local_ttl_s``.

Redis Cluster would need the value and generation keys in one hash slot; the project's Redis is a
single primary. The generation outlives the value by far (one day), so a reader cannot see it
expire and reappear with the number it read. The cache belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, TypeVar

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from tripline.common.logs import get_logger
from tripline.common.redis_client import GuardedRedis
from tripline.common.tasks import stop_task

JSON: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None
Loader: TypeAlias = Callable[[], Awaitable[JSON]]
T = TypeVar("T")

logger = get_logger(__name__)

GENERATION_TTL_S = 86_400
FIRST_RESUBSCRIBE_DELAY_S = 0.05
LAST_RESUBSCRIBE_DELAY_S = 1.0

# KEYS: value, generation. ARGV: the generation read before loading ('' for none), JSON, ttl ms.
STORE = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: value and generation of each key in turn. ARGV: generation ttl (s), channel, message.
INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


class CacheEvent(StrEnum):
    LOCAL_HIT = "local_hit"
    REDIS_HIT = "redis_hit"
    MISS = "miss"
    # Redis failed, was being left alone, or the key awaits an invalidation: the loader answered.
    FALLBACK = "fallback"


class _RedisUnavailable(Exception):
    """Redis failed, timed out, or is left alone after a failure."""


@dataclass(eq=False)
class _Flight:
    """One load of a key in progress, shared by every reader that arrives meanwhile."""

    epoch: int
    stale: bool = False
    task: asyncio.Task[tuple[str | None, CacheEvent]] = field(init=False)


class TwoLayerCache:
    """Cache-aside in Redis with a local layer in front; see the module docstring.

    Keys are plain strings, unique within ``namespace``. ``on_event(namespace, event)`` is called
    once per ``get`` (for metrics) and must not raise. ``clock`` times the local layer and the
    The local layer needs :meth:`start` (its invalidations arrive
    through the listener); call :meth:`stop` before closing the Redis client.
    """

    def __init__(
        self,
        redis: GuardedRedis,
        *,
        namespace: str,
        local_ttl_s: float = 2.0,
        local_max_entries: int = 10_000,
        redis_timeout_s: float = 0.25,
        ping_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, CacheEvent], None] | None = None,
    ) -> None:
        if local_max_entries < 0:
            raise ValueError(f"local_max_entries must not be negative, got {local_max_entries}")
        for name, value in (("redis_timeout_s", redis_timeout_s), ("ping_every_s", ping_every_s)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._redis = redis
        self._namespace = namespace
        self._channel = f"cache:{namespace}:invalidations"
        self._local_ttl_s = local_ttl_s
        self._local_max_entries = local_max_entries
        self._timeout_s = redis_timeout_s
        self._ping_every_s = ping_every_s
        self._clock = clock
        self._on_event = on_event
        self._store = redis.register_script(STORE)
        self._invalidate = redis.register_script(INVALIDATE)
        self._local: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Key → the mark of its latest failed invalidation; a retry clears only what it sent.
        self._dirty: dict[str, int] = {}
        self._marks = 0
        self._epoch = 0
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._degraded = False
        self._redis_calls = 0
        self._redis_failures = 0

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def listening(self) -> bool:
        """True while subscribed to the namespace's invalidations (the local layer is in use)."""
        return self._listening

    @property
    def degraded(self) -> bool:
        """True from a Redis failure until a command succeeds again."""
        return self._degraded

    @property
    def pending_invalidations(self) -> int:
        """Keys whose invalidation has not reached Redis yet (they are read from the loader)."""
        return len(self._dirty)

    @property
    def redis_calls(self) -> int:
        """Commands and scripts sent to Redis by reads and invalidations (not the listener)."""
        return self._redis_calls

    @property
    def redis_failures(self) -> int:
        """Those that failed or timed out."""
        return self._redis_failures

    async def start(self) -> None:
        """Start the invalidation listener; returns at once (it subscribes in the background and
        keeps resubscribing while Redis is away). Safe to call twice."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        """Stop the listener; the local layer is then no longer used."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # The loops also check the task, for a cancellation swallowed inside the client.
            await stop_task(listener)

    async def get(self, key: str, loader: Loader, *, ttl_s: float) -> JSON:
        """The value of ``key``: from the local layer (for ``min(local_ttl_s, ttl_s)``), Redis
        (stored for ``ttl_s``) or ``await loader()``.

        Returns a fresh copy each call. Never raises for Redis; raises what the loader raises
        (to every reader sharing that load).
        """
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        text = self._local_get(key)
        if text is not None:
            self._emit(CacheEvent.LOCAL_HIT)
            return _decode(text)
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(self._epoch)
            flight.task = asyncio.create_task(self._load(key, flight, loader, ttl_s))
            self._flights[key] = flight
            self._tasks.add(flight.task)
            flight.task.add_done_callback(lambda task: self._land(key, flight, task))
        # A reader that goes away must not cancel the load the others wait for.
        text, event = await asyncio.shield(flight.task)
        self._emit(event)
        return None if text is None else _decode(text)

    async def invalidate(self, *keys: str) -> None:
        """Forget ``keys`` in every layer of every replica; call it once the database write is
        acknowledged. Never raises for Redis: a key it cannot reach is read from the loader
        until a retry succeeds (see the module docstring)."""
        for key in keys:
            self._marks += 1
            self._dirty[key] = self._marks
        self._forget(keys)
        with contextlib.suppress(_RedisUnavailable):
            await self._flush_dirty()

    async def _load(
        self, key: str, flight: _Flight, loader: Loader, ttl_s: float
    ) -> tuple[str | None, CacheEvent]:
        value_key, generation_key = self._keys(key)
        try:
            if key in self._dirty:
                await self._flush_dirty()
            value, generation = await self._call(
                lambda: self._redis.mget(value_key, generation_key)
            )
        except _RedisUnavailable:
            text = _encode(await loader())
            self._fill_local(key, flight, text, ttl_s)
            return text, CacheEvent.FALLBACK
        if value is not None:
            text = _str(value)
            self._fill_local(key, flight, text, ttl_s)
            return text, CacheEvent.REDIS_HIT
        text = _encode(await loader())
        if text is not None and self._current(flight):
            seen = "" if generation is None else _str(generation)
            args: list[str | int] = [seen, text, max(1, round(ttl_s * 1000))]
            with contextlib.suppress(_RedisUnavailable):
                await self._call(lambda: self._store(keys=[value_key, generation_key], args=args))
        self._fill_local(key, flight, text, ttl_s)
        return text, CacheEvent.MISS

    def _land(self, key: str, flight: _Flight, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis command under the timeout; raises :class:`_RedisUnavailable` when it
        fails, or without sending it while the client's guard holds Redis for down."""
        if not self._redis.guard.up:
            self._degrade(None)
            raise _RedisUnavailable
        self._redis_calls += 1
        try:
            result = await asyncio.wait_for(command(), self._timeout_s)
        except TimeoutError as exc:
            # The command was abandoned, so the client never saw it fail: tell its guard.
            self._redis.guard.breaker.trip()
            self._redis_failures += 1
            self._degrade(exc)
            raise _RedisUnavailable from exc
        except (RedisError, OSError) as exc:
            self._redis_failures += 1
            self._degrade(exc)
            raise _RedisUnavailable from exc
        if self._degraded:
            self._degraded = False
            logger.info("cache uses Redis again", namespace=self._namespace)
        return result

    def _degrade(self, exc: BaseException | None) -> None:
        if not self._degraded:
            self._degraded = True
            self._new_epoch()
            logger.warning("cache bypasses Redis", namespace=self._namespace, error=repr(exc))

    async def _flush_dirty(self) -> None:
        """Send every pending invalidation in one script call; raises :class:`_RedisUnavailable`
        (the keys stay dirty)."""
        if not self._dirty:
            return
        batch = dict(self._dirty)
        keys = [name for key in batch for name in self._keys(key)]
        args: list[str | int] = [GENERATION_TTL_S, self._channel, json.dumps(list(batch))]
        await self._call(lambda: self._invalidate(keys=keys, args=args))
        for key, mark in batch.items():
            if self._dirty.get(key) == mark:
                del self._dirty[key]

    def _keys(self, key: str) -> tuple[str, str]:
        return f"cache:{self._namespace}:v:{key}", f"cache:{self._namespace}:g:{key}"

    def _forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._local.pop(key, None)
            flight = self._flights.pop(key, None)
            if flight is not None:
                flight.stale = True

    def _current(self, flight: _Flight) -> bool:
        return not flight.stale and flight.epoch == self._epoch

    def _new_epoch(self) -> None:
        self._epoch += 1
        self._local.clear()

    def _local_get(self, key: str) -> str | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        text, expires_at = entry
        if self._clock() >= expires_at:
            del self._local[key]
            return None
        self._local.move_to_end(key)
        return text

    def _fill_local(self, key: str, flight: _Flight, text: str | None, ttl_s: float) -> None:
        ttl = min(self._local_ttl_s, ttl_s)
        usable = self._listening and not self._degraded and self._local_max_entries > 0
        if text is None or ttl <= 0 or not usable or not self._current(flight):
            return
        self._local[key] = (text, self._clock() + ttl)
        self._local.move_to_end(key)
        while len(self._local) > self._local_max_entries:
            self._local.popitem(last=False)

    def _emit(self, event: CacheEvent) -> None:
        if self._on_event is not None:
            self._on_event(self._namespace, event)

    async def _listen(self) -> None:
        delay = FIRST_RESUBSCRIBE_DELAY_S
        while self._listener is asyncio.current_task():
            pubsub = self._redis.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(self._channel), self._timeout_s)
                await self._receive(pubsub)
            except (RedisError, OSError) as exc:
                logger.warning(
                    "cache invalidations unheard", namespace=self._namespace, error=repr(exc)
                )
            finally:
                was_listening = self._listening
                self._set_listening(False)
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            delay = (
                FIRST_RESUBSCRIBE_DELAY_S
                if was_listening
                else min(delay * 2, LAST_RESUBSCRIBE_DELAY_S)
            )
            await asyncio.sleep(delay)

    async def _receive(self, pubsub: PubSub) -> None:
        """Apply invalidations until the connection fails or stops answering PING (raises)."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while self._listener is asyncio.current_task():
            # Bounded here too: the client's own reconnection attempts may outlast the poll.
            message = await asyncio.wait_for(
                pubsub.get_message(timeout=self._ping_every_s), self._ping_every_s + self._timeout_s
            )
            now = loop.time()
            if message is not None:
                heard = now
                await self._handle(message)
            elif now - heard >= 2 * self._ping_every_s:
                raise TimeoutError("the invalidation channel does not answer PING")
            else:
                await asyncio.wait_for(pubsub.ping(), self._timeout_s)

    async def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # Also after the client reconnected on its own: what was published meanwhile is lost.
            self._set_listening(True)
            with contextlib.suppress(_RedisUnavailable):
                await self._flush_dirty()
        elif message["type"] == "message":
            try:
                keys = json.loads(message["data"])
            except ValueError:
                logger.warning("cache invalidation unreadable", namespace=self._namespace)
                return
            self._forget(str(key) for key in keys)

    def _set_listening(self, listening: bool) -> None:
        if listening or self._listening:
            self._new_epoch()
        self._listening = listening


def _encode(value: JSON) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _decode(text: str) -> JSON:
    decoded: JSON = json.loads(text)
    return decoded


def _str(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
