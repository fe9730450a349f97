"""Rate limits shared by every replica through Redis, with an in-process fallback.

The arithmetic is :func:`tripline.common.ratelimit.decide`; here it runs inside Redis as one Lua
script, so reading the buckets, deciding and counting is atomic and takes one round trip. The
script decides a whole batch of requests at once: every :meth:`RedisLimiter.hit` made in the
same event-loop tick joins one call (measured here with 50 concurrent callers: three to five
times the decisions per second of one EVALSHA per request). A key may appear more than once in a
batch; each occurrence sees the hits counted before it.

By default the script reads Redis's own clock (``TIME``), so every gateway replica counts in the
same seconds whatever its own clock says. Each key is a hash of at most ``W + 1`` fields
(second → hits) that expires once its newest bucket has left the window.

Redis Cluster: a script may only touch keys of one hash slot, so there a batch must be split by
slot (or the keys given a hash tag). The project's Redis is a single primary, so it is not done.

When Redis fails or does not answer within ``timeout_s`` (``asyncio.wait_for`` bounds the client's
own retries too), :class:`RedisLimiter` turns degraded: it decides in process with each limit
divided by the number of gateway replicas and admits critical traffic regardless. Whether Redis
is tried at all is the client's guard's decision (:mod:`tripline.common.redis_client`): a batch
that times out here trips it, and while it is open every batch is decided locally without a
round trip, until the guard's own probe finds Redis again. A hung Redis (sockets open, no
replies) therefore costs one timeout, not one per request. A batch that timed out may still be
counted by Redis once it wakes up, which can only make the shared limits stricter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.logs import get_logger
from tripline.common.ratelimit import Decision, LocalLimiter, Quota, Source
from tripline.common.redis_client import GuardedRedis

logger = get_logger(__name__)

# KEYS: one bucket hash per request (a key may repeat).
# ARGV: limit and window of each key in turn, then now in seconds ('' for Redis's clock).
# Returns per key: {allowed 0/1, hits counted after this request, retry-after, reset}.
LUA = """
local now = tonumber(ARGV[#ARGV])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local current = math.floor(now)
local results = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local fields = redis.call('HGETALL', key)
  local seconds, hits, count = {}, {}, 0
  for j = 1, #fields, 2 do
    local second = tonumber(fields[j])
    if second < current - window then
      redis.call('HDEL', key, fields[j])
    else
      seconds[#seconds + 1] = second
      hits[second] = tonumber(fields[j + 1])
      count = count + hits[second]
    end
  end
  table.sort(seconds)
  if count + 1 <= limit then
    redis.call('HINCRBY', key, string.format('%d', current), 1)
    redis.call('PEXPIRE', key, (window + 1) * 1000)
    local oldest = math.min(seconds[1] or current, current)
    results[i] = {1, count + 1, 0, oldest + window + 1 - current}
  else
    local need, seen, wait = count + 1 - limit, 0, 0
    for _, second in ipairs(seconds) do
      seen = seen + hits[second]
      if seen >= need then
        wait = second + window + 1 - current
        break
      end
    end
    results[i] = {0, count, wait, wait}
  end
end
return results
"""


class LimitScript:
    """The limiter's Lua script, registered on one client (loaded on first use)."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(LUA)

    async def __call__(
        self, hits: Sequence[tuple[str, Quota]], *, now: float | None = None
    ) -> list[Decision]:
        """Decide and count ``hits`` (key, quota) in order, in one round trip.

        ``now`` (seconds) replaces Redis's clock; tests use it. Returns one decision per hit,
        source ``REDIS``. Raises what the client raises (:class:`RedisError`, :class:`OSError`).
        """
        args: list[int | str] = []
        for _, quota in hits:
            args += [quota.limit, quota.window_s]
        args.append("" if now is None else repr(float(now)))
        replies = await self._script(keys=[key for key, _ in hits], args=args)
        return [_decision(quota, reply) for (_, quota), reply in zip(hits, replies, strict=True)]


def _decision(quota: Quota, reply: Sequence[Any]) -> Decision:
    allowed, counted, retry_after, reset = (int(value) for value in reply)
    return Decision(
        allowed=allowed == 1,
        limit=quota.limit,
        remaining=max(0, quota.limit - counted),
        reset_s=reset,
        retry_after_s=retry_after,
        window_s=quota.window_s,
    )


@dataclass
class _Pending:
    key: str
    quota: Quota
    fail_open: bool
    future: asyncio.Future[Decision]


class RedisLimiter:
    """Shared rate limits with batching and a local fallback; see the module docstring.

    ``fallback_divisor`` is the number of replicas sharing the limits (each gets its share while
    degraded). ``on_mode_change(degraded)`` is called on every switch, after the affected
    callers have their answers; it must not raise.
    """

    def __init__(
        self,
        redis: GuardedRedis,
        *,
        fallback_divisor: int = 1,
        timeout_s: float = 0.25,
        local: LocalLimiter | None = None,
        on_mode_change: Callable[[bool], None] | None = None,
    ) -> None:
        if fallback_divisor < 1:
            raise ValueError(f"fallback_divisor must be at least 1, got {fallback_divisor}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._script = LimitScript(redis)
        self._guard = redis.guard
        self._fallback_divisor = fallback_divisor
        self._timeout_s = timeout_s
        self._local = local or LocalLimiter()
        self._on_mode_change = on_mode_change
        self._pending: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._degraded = False
        self._script_calls = 0
        self._script_failures = 0

    @property
    def degraded(self) -> bool:
        """True while decisions come from this process instead of Redis."""
        return self._degraded

    @property
    def script_calls(self) -> int:
        """Script calls sent to Redis so far; each carries one batch."""
        return self._script_calls

    @property
    def script_failures(self) -> int:
        """Script calls that failed or timed out."""
        return self._script_failures

    async def hit(self, key: str, quota: Quota, *, fail_open: bool = False) -> Decision:
        """Decide one request on ``key`` (see :func:`~tripline.common.ratelimit.limit_key`) and
        count it when admitted. Every hit of one event-loop tick is decided in one script call.

        Never raises for a Redis problem: the decision then comes from the local limiter
        (source ``LOCAL``), or is an admission (source ``FAIL_OPEN``) when ``fail_open``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(_Pending(key, quota, fail_open, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not self._guard.up:
            # Waiting on a failing Redis would add its timeout to every request: answer now.
            self._answer_locally(batch)
            self._degrade(None)
            return
        task = asyncio.create_task(self._decide_on_redis(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide_on_redis(self, batch: list[_Pending]) -> None:
        self._script_calls += 1
        try:
            decisions = await asyncio.wait_for(
                self._script([(pending.key, pending.quota) for pending in batch]),
                self._timeout_s,
            )
        except TimeoutError as exc:
            # The call was abandoned, so the client never saw it fail: tell its guard.
            self._guard.breaker.trip()
            self._script_failures += 1
            self._answer_locally(batch)
            self._degrade(exc)
        except (RedisError, OSError) as exc:
            self._script_failures += 1
            self._answer_locally(batch)
            self._degrade(exc)
        else:
            for pending, decision in zip(batch, decisions, strict=True):
                _settle(pending.future, decision)
            if self._degraded:
                self._degraded = False
                logger.info("rate limits shared through Redis again")
                self._notify(degraded=False)
        finally:
            # After a failure, or a bug, no caller may be left waiting.
            self._answer_locally(batch)

    def _degrade(self, exc: BaseException | None) -> None:
        if not self._degraded:
            self._degraded = True
            logger.warning("rate limits decided in process: Redis failed", error=repr(exc))
            self._notify(degraded=True)

    def _answer_locally(self, batch: Iterable[_Pending]) -> None:
        for pending in batch:
            if not pending.future.done():
                decision = self._decide_locally(
                    pending.key, pending.quota, fail_open=pending.fail_open
                )
                pending.future.set_result(decision)

    def _decide_locally(self, key: str, quota: Quota, *, fail_open: bool) -> Decision:
        share = Quota(max(1, quota.limit // self._fallback_divisor), quota.window_s)
        decision = self._local.hit(key, share)
        if fail_open:
            return replace(decision, allowed=True, retry_after_s=0, source=Source.FAIL_OPEN)
        return decision

    def _notify(self, *, degraded: bool) -> None:
        if self._on_mode_change is not None:
            self._on_mode_change(degraded)


def _settle(future: asyncio.Future[Decision], decision: Decision) -> None:
    # The caller may have been cancelled (its client went away) while the batch was out.
    if not future.done():
        future.set_result(decision)
