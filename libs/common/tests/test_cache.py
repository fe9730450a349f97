"""The two-layer cache on a real redis-server: layers and their events, TTLs, invalidation across
replicas, single flight, a stopped or hung Redis, the stale-fill race, and a property over
interleavings of reads, updates and outages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tripline.common.cache import JSON, CacheEvent, Loader, TwoLayerCache
from tripline.common.redis_client import GuardedRedis, create_redis
from tripline.common.settings import ServiceSettings
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import Backends, Server, scaled

pytestmark = pytest.mark.integration


def connect(port: int | None) -> GuardedRedis:
    # The production client (its reconnection retries included) with a generous socket timeout:
    # the cache's own timeout must be what cuts a hang short.
    return create_redis(
        ServiceSettings(
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_socket_timeout_s=scaled(10),
            instance_id="test",
        )
    )


def fresh_namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


class Database:
    """The stand-in database: a version per key. Loaders count their calls, read the row when
    called and, while ``gate`` is set, wait for it before answering (a slow query)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.loading = asyncio.Event()

    def update(self, key: str) -> int:
        self.rows[key] = self.rows.get(key, 0) + 1
        return self.rows[key]

    def loader(self, key: str) -> Loader:
        async def load() -> JSON:
            self.loads += 1
            version = self.rows.get(key)
            gate = self.gate
            self.loading.set()
            if gate is not None:
                await gate.wait()
            return None if version is None else {"key": key, "version": version}

        return load


class Events:
    def __init__(self) -> None:
        self.seen: list[CacheEvent] = []

    def __call__(self, namespace: str, event: CacheEvent) -> None:
        self.seen.append(event)

    def take(self) -> list[CacheEvent]:
        seen, self.seen = self.seen, []
        return seen


@pytest.fixture
async def client(backends: Backends) -> AsyncIterator[GuardedRedis]:
    redis = connect(backends.redis.port)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
async def own_client(fresh_redis: Server) -> AsyncIterator[GuardedRedis]:
    redis = connect(fresh_redis.port)
    try:
        yield redis
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def running(cache: TwoLayerCache) -> AsyncIterator[TwoLayerCache]:
    """The cache with its listener subscribed."""
    await cache.start()
    try:
        await until(lambda: cache.listening, "the listener never subscribed")
        yield cache
    finally:
        await cache.stop()


async def until(condition: Callable[[], bool], failure: str, seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + scaled(seconds)
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(failure)
        await asyncio.sleep(0.01)


async def eventually(
    read: Callable[[], Awaitable[JSON]], expected: JSON, failure: str, seconds: float = 10
) -> None:
    deadline = asyncio.get_running_loop().time() + scaled(seconds)
    while (got := await read()) != expected:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{failure}: still {got!r}")
        await asyncio.sleep(0.02)


def row(key: str, version: int) -> dict[str, Any]:
    return {"key": key, "version": version}


async def test_each_layer_answers_in_turn_and_reports_it(client: GuardedRedis) -> None:
    db, events, namespace = Database(), Events(), fresh_namespace()
    db.update("u1")
    first = TwoLayerCache(client, namespace=namespace, on_event=events)
    second = TwoLayerCache(client, namespace=namespace, on_event=events)
    async with running(first), running(second):
        assert await first.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 1)
        assert await first.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 1)
        assert await second.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 1)
        assert await second.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 1)
    assert events.take() == [
        CacheEvent.MISS,
        CacheEvent.LOCAL_HIT,
        CacheEvent.REDIS_HIT,
        CacheEvent.LOCAL_HIT,
    ]
    assert db.loads == 1


async def test_every_reader_gets_its_own_copy(client: GuardedRedis) -> None:
    db = Database()
    db.update("u1")
    async with running(TwoLayerCache(client, namespace=fresh_namespace())) as cache:
        first = await cache.get("u1", db.loader("u1"), ttl_s=60)
        assert isinstance(first, dict)
        first["version"] = 99
        assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 1)


async def test_none_is_not_cached_so_a_created_record_appears(client: GuardedRedis) -> None:
    db, events = Database(), Events()
    async with running(TwoLayerCache(client, namespace=fresh_namespace(), on_event=events)) as c:
        assert await c.get("t1", db.loader("t1"), ttl_s=60) is None
        db.update("t1")
        assert await c.get("t1", db.loader("t1"), ttl_s=60) == row("t1", 1)
    assert events.take() == [CacheEvent.MISS, CacheEvent.MISS]


async def test_without_the_listener_the_local_layer_stays_empty(client: GuardedRedis) -> None:
    db, events = Database(), Events()
    db.update("u1")
    cache = TwoLayerCache(client, namespace=fresh_namespace(), on_event=events)
    await cache.get("u1", db.loader("u1"), ttl_s=60)
    await cache.get("u1", db.loader("u1"), ttl_s=60)
    assert events.take() == [CacheEvent.MISS, CacheEvent.REDIS_HIT]


async def test_the_local_layer_keeps_the_shorter_of_its_ttl_and_the_callers(
    client: GuardedRedis,
) -> None:
    db, events, clock = Database(), Events(), FakeClock()
    db.update("short")
    db.update("long")
    cache = TwoLayerCache(
        client, namespace=fresh_namespace(), local_ttl_s=2, clock=clock, on_event=events
    )
    async with running(cache):
        await cache.get("short", db.loader("short"), ttl_s=1)
        await cache.get("long", db.loader("long"), ttl_s=60)
        clock.advance(0.9)
        await cache.get("short", db.loader("short"), ttl_s=1)
        clock.advance(0.2)
        await cache.get("short", db.loader("short"), ttl_s=1)
        await cache.get("long", db.loader("long"), ttl_s=60)
        clock.advance(1)
        await cache.get("long", db.loader("long"), ttl_s=60)
    assert events.take() == [
        CacheEvent.MISS,
        CacheEvent.MISS,
        CacheEvent.LOCAL_HIT,
        # Redis keeps it for a real second: the fake one moved on only the local layer.
        CacheEvent.REDIS_HIT,
        CacheEvent.LOCAL_HIT,
        CacheEvent.REDIS_HIT,
    ]


async def test_the_local_layer_evicts_the_least_recently_used(client: GuardedRedis) -> None:
    db, events = Database(), Events()
    for key in ("a", "b", "c"):
        db.update(key)
    cache = TwoLayerCache(client, namespace=fresh_namespace(), local_max_entries=2, on_event=events)
    async with running(cache):
        for key in ("a", "b", "a", "c", "a", "b"):
            await cache.get(key, db.loader(key), ttl_s=60)
    assert events.take() == [
        CacheEvent.MISS,
        CacheEvent.MISS,
        CacheEvent.LOCAL_HIT,
        CacheEvent.MISS,
        CacheEvent.LOCAL_HIT,
        CacheEvent.REDIS_HIT,
    ]


async def test_redis_keeps_a_value_for_ttl_s(client: GuardedRedis) -> None:
    db, events, namespace = Database(), Events(), fresh_namespace()
    db.update("s")
    cache = TwoLayerCache(client, namespace=namespace, on_event=events)
    await cache.get("s", db.loader("s"), ttl_s=0.3)
    assert 0 < await client.pttl(value_key(namespace, "s")) <= 300
    db.update("s")
    await eventually(lambda: cache.get("s", db.loader("s"), ttl_s=0.3), row("s", 2), "no expiry")
    assert events.seen[0] is CacheEvent.MISS
    assert events.seen[-1] is CacheEvent.MISS


async def test_an_invalidation_reaches_every_replica(backends: Backends) -> None:
    db, namespace = Database(), fresh_namespace()
    db.update("u1")
    clients = [connect(backends.redis.port), connect(backends.redis.port)]
    replicas = [TwoLayerCache(redis, namespace=namespace) for redis in clients]
    try:
        async with running(replicas[0]) as writer, running(replicas[1]) as reader:
            for cache in (writer, reader, reader):
                assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 1)
            db.update("u1")
            await writer.invalidate("u1")
            assert await writer.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
            await eventually(
                lambda: reader.get("u1", db.loader("u1"), ttl_s=60),
                row("u1", 2),
                "the other replica kept its local copy",
            )
    finally:
        for redis in clients:
            await redis.aclose()


async def test_concurrent_misses_share_one_redis_read_and_one_load(client: GuardedRedis) -> None:
    db, events = Database(), Events()
    db.update("u1")
    db.gate = asyncio.Event()
    cache = TwoLayerCache(client, namespace=fresh_namespace(), on_event=events)
    readers = [asyncio.create_task(cache.get("u1", db.loader("u1"), ttl_s=60)) for _ in range(20)]
    await db.loading.wait()
    db.gate.set()
    assert await asyncio.gather(*readers) == [row("u1", 1)] * 20
    assert db.loads == 1
    # One MGET, one store.
    assert cache.redis_calls == 2
    assert events.take() == [CacheEvent.MISS] * 20


async def test_a_reader_that_goes_away_leaves_the_shared_load_running(client: GuardedRedis) -> None:
    db = Database()
    db.update("u1")
    db.gate = asyncio.Event()
    cache = TwoLayerCache(client, namespace=fresh_namespace())
    leaving = asyncio.create_task(cache.get("u1", db.loader("u1"), ttl_s=60))
    staying = asyncio.create_task(cache.get("u1", db.loader("u1"), ttl_s=60))
    await db.loading.wait()
    leaving.cancel()
    db.gate.set()
    assert await staying == row("u1", 1)
    assert leaving.cancelled()
    assert db.loads == 1


async def test_a_loader_error_reaches_every_reader_of_that_load(client: GuardedRedis) -> None:
    async def failing() -> JSON:
        await asyncio.sleep(0)
        raise LookupError("database says no")

    cache = TwoLayerCache(client, namespace=fresh_namespace())
    results = await asyncio.gather(
        *(cache.get("u1", failing, ttl_s=60) for _ in range(3)), return_exceptions=True
    )
    assert [type(result) for result in results] == [LookupError] * 3


async def test_the_stale_fill_race_leaves_nothing_old_behind(client: GuardedRedis) -> None:
    db, namespace = Database(), fresh_namespace()
    db.update("u1")
    db.gate = asyncio.Event()
    async with running(TwoLayerCache(client, namespace=namespace)) as cache:
        slow = asyncio.create_task(cache.get("u1", db.loader("u1"), ttl_s=60))
        await db.loading.wait()
        db.update("u1")
        await cache.invalidate("u1")
        # Let the invalidation come back through the channel too: it must not be what saves us.
        await asyncio.sleep(scaled(0.1))
        db.gate.set()
        # It began before the update: the old value is a fair answer, but must not be kept.
        assert await slow == row("u1", 1)
        assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
        other = TwoLayerCache(client, namespace=namespace)
        assert await other.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)


async def test_a_read_during_the_invalidation_round_trip_waits_for_it(
    fresh_redis: Server, own_client: GuardedRedis
) -> None:
    db, events = Database(), Events()
    db.update("u1")
    cache = TwoLayerCache(
        own_client, namespace=fresh_namespace(), redis_timeout_s=scaled(5), on_event=events
    )
    admin = connect(fresh_redis.port)
    try:
        async with running(cache):
            await cache.get("u1", db.loader("u1"), ttl_s=60)
            db.update("u1")
            # Writes (the invalidation script) wait; reads would still answer with the old value.
            await admin.client_pause(round(scaled(5) * 1000), all=False)
            invalidating = asyncio.create_task(cache.invalidate("u1"))
            reading = asyncio.create_task(cache.get("u1", db.loader("u1"), ttl_s=60))
            await asyncio.sleep(0.05)
            assert not reading.done()
            await admin.client_unpause()
            assert await reading == row("u1", 2)
            await invalidating
            assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
    finally:
        await admin.aclose()
    # The third depends on when the invalidations came back through the channel.
    assert events.take()[:2] == [CacheEvent.MISS, CacheEvent.MISS]


async def test_the_generation_stops_a_stale_fill_from_another_replica(client: GuardedRedis) -> None:
    db, events, namespace = Database(), Events(), fresh_namespace()
    db.update("u1")
    db.gate = asyncio.Event()
    # No listener: only Redis's generation can tell the reader that it lost the race.
    reader = TwoLayerCache(client, namespace=namespace, on_event=events)
    writer = TwoLayerCache(client, namespace=namespace)
    slow = asyncio.create_task(reader.get("u1", db.loader("u1"), ttl_s=60))
    await db.loading.wait()
    db.update("u1")
    await writer.invalidate("u1")
    db.gate.set()
    assert await slow == row("u1", 1)
    db.gate = None
    assert await reader.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
    assert await client.get(f"cache:{namespace}:g:u1") == b"1"
    assert events.take() == [CacheEvent.MISS, CacheEvent.MISS]


async def test_a_stopped_redis_falls_back_to_the_loader_and_is_used_again_after(
    fresh_redis: Server, own_client: GuardedRedis
) -> None:
    db, events, clock, namespace = Database(), Events(), FakeClock(), fresh_namespace()
    db.update("u1")
    cache = TwoLayerCache(
        own_client,
        namespace=namespace,
        redis_timeout_s=scaled(2),
        clock=clock,
        on_event=events,
    )
    async with running(cache):
        await cache.get("u1", db.loader("u1"), ttl_s=60)
        await asyncio.to_thread(fresh_redis.stop)
        await until(lambda: not cache.listening, "the listener never noticed")
        db.update("u1")
        await cache.invalidate("u1")
        answers = [await cache.get("u1", db.loader("u1"), ttl_s=60) for _ in range(3)]
        assert answers == [row("u1", 2)] * 3
        assert events.take() == [CacheEvent.MISS, *[CacheEvent.FALLBACK] * 3]
        assert cache.degraded
        assert cache.pending_invalidations == 1
        # The invalidation failed; everything after it skipped Redis.
        assert (cache.redis_calls, cache.redis_failures) == (3, 1)

        await asyncio.to_thread(fresh_redis.start)
        # A Redis that comes back with its data still holds the old value.
        planter = connect(fresh_redis.port)
        await planter.set(value_key(namespace, "u1"), '{"key":"u1","version":1}')
        await planter.aclose()
        deadline = asyncio.get_running_loop().time() + scaled(10)
        while cache.pending_invalidations or cache.degraded:
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail("the invalidation was never retried")
            clock.advance(5)
            assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
            await asyncio.sleep(0.02)
        await until(lambda: cache.listening, "the listener never subscribed again")
        events.take()
        assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
        assert await cache.get("u1", db.loader("u1"), ttl_s=60) == row("u1", 2)
    assert events.take() in (
        [CacheEvent.REDIS_HIT, CacheEvent.LOCAL_HIT],
        # The last fallback answered before the retry landed: nothing was stored.
        [CacheEvent.MISS, CacheEvent.LOCAL_HIT],
    )


def value_key(namespace: str, key: str) -> str:
    return f"cache:{namespace}:v:{key}"


async def test_a_hung_redis_costs_one_timeout_then_answers_at_once(
    fresh_redis: Server, own_client: GuardedRedis
) -> None:
    db, events, clock = Database(), Events(), FakeClock()
    db.update("warm")
    cache = TwoLayerCache(
        own_client,
        namespace=fresh_namespace(),
        redis_timeout_s=scaled(0.25),
        clock=clock,
        on_event=events,
    )
    await cache.get("warm", db.loader("warm"), ttl_s=60)
    process = fresh_redis.process
    assert process is not None
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        for n in range(20):
            await cache.get(f"k{n}", db.loader(f"k{n}"), ttl_s=60)
        await cache.invalidate("k0")
        # The warm-up's MGET and store, then one MGET that timed out and tripped the client's
        # guard; nothing else was sent.
        assert (cache.redis_calls, cache.redis_failures) == (3, 1)
        assert events.take() == [CacheEvent.MISS, *[CacheEvent.FALLBACK] * 20]
        assert cache.pending_invalidations == 1
    finally:
        os.kill(process.pid, signal.SIGCONT)
    # The guard's probe finds Redis again; no read had to.
    await until(lambda: own_client.guard.up, "the guard never saw Redis again")
    db.update("k0")
    assert await cache.get("k0", db.loader("k0"), ttl_s=60) == row("k0", 1)
    assert cache.pending_invalidations == 0
    assert events.take() == [CacheEvent.MISS]


# --- interleavings -------------------------------------------------------------------------------


class Relay:
    """A TCP relay in front of the real Redis that can cut every connection and refuse new ones:
    Redis unreachable in a millisecond, where stopping and restarting the server takes a second.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def cut(self) -> None:
        self.up = False
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.up = False
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers |= {writer, upstream_writer}
        if not self.up:
            # Cut while this connection was being relayed.
            self.cut()
            return
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)


KEYS = ("a", "b")
READ = st.tuples(st.just("read"), st.sampled_from(KEYS))
UPDATE = st.tuples(st.just("update"), st.sampled_from(KEYS))
RELEASE = st.tuples(st.just("release"), st.integers(0, 3))
SETTLE = st.just(("settle", 0))
# one_of draws its branches evenly: repeats make the racy operations the common ones.
OPERATIONS = st.lists(
    st.one_of(
        READ,
        READ,
        READ,
        UPDATE,
        UPDATE,
        RELEASE,
        RELEASE,
        RELEASE,
        SETTLE,
        SETTLE,
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
        st.just(("down", 0)),
        st.just(("up", 0)),
    ),
    min_size=1,
    max_size=30,
)


async def answered_or_loading(task: asyncio.Task[JSON], held: list[asyncio.Event]) -> None:
    """Wait until the read has its answer or its loader has read the row; a read that joined
    a load in progress does neither, and is given a moment."""
    before = len(held)
    deadline = asyncio.get_running_loop().time() + scaled(0.05)
    while not task.done() and len(held) == before:
        if asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.001)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
# Random search finds these only in hundreds of examples; they always run.
# A load that read the old row ends after the invalidation came back through the channel:
@example(
    operations=[
        ("read", "a"),
        ("update", "a"),
        ("settle", 0),
        ("release", 0),
        ("settle", 0),
        ("read", "a"),
        ("release", 0),
    ]
)
# The invalidation cannot reach Redis, which keeps the old value and comes back:
@example(
    operations=[
        ("read", "a"),
        ("release", 0),
        ("settle", 0),
        ("down", 0),
        ("update", "a"),
        ("up", 0),
        ("advance", 3.0),
        ("read", "a"),
        ("release", 0),
    ]
)
async def test_a_read_after_an_acknowledged_update_never_sees_the_old_value(
    backends: Backends, operations: list[tuple[str, Any]]
) -> None:
    db, clock = Database(), FakeClock()
    held: list[asyncio.Event] = []
    relay = Relay(backends.redis.port or 0)
    redis = connect(await relay.start())
    cache = TwoLayerCache(
        redis,
        namespace=fresh_namespace(),
        local_ttl_s=2,
        redis_timeout_s=scaled(0.5),
        ping_every_s=0.2,
        clock=clock,
    )

    def held_loader(key: str) -> Loader:
        async def load() -> JSON:
            # The row is read now; the answer arrives when the test lets it.
            version = db.rows.get(key, 0)
            gate = asyncio.Event()
            held.append(gate)
            await gate.wait()
            return version

        return load

    # (task, key, the version acknowledged when the read began)
    reads: list[tuple[asyncio.Task[JSON], str, int]] = []
    await cache.start()
    try:
        await until(lambda: cache.listening, "the listener never subscribed")
        for name, argument in operations:
            if name == "read":
                task = asyncio.create_task(cache.get(argument, held_loader(argument), ttl_s=30))
                reads.append((task, argument, db.rows.get(argument, 0)))
                await answered_or_loading(task, held)
            elif name == "update":
                db.update(argument)
                await cache.invalidate(argument)
            elif name == "release" and held:
                held.pop(min(argument, len(held) - 1)).set()
            elif name == "advance":
                clock.advance(argument)
            elif name == "down":
                relay.cut()
            elif name == "up":
                relay.up = True
            # Time for Redis round trips and the invalidation channel; longer after "settle".
            await asyncio.sleep(0.03 if name == "settle" else 0.002)
        while held or not all(task.done() for task, _, _ in reads):
            for gate in held:
                gate.set()
            held.clear()
            await asyncio.sleep(0.005)
        for task, key, acknowledged in reads:
            got = await task
            assert isinstance(got, int)
            assert got >= acknowledged, (key, got, acknowledged)
    finally:
        await cache.stop()
        await redis.aclose()
        await relay.close()
