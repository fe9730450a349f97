"""A lease in Redis: at most one holder at a time does a job (replaying a queue, writing history).

The holder renews it before each unit of work; a holder that dies loses it after ``ttl_s`` and
another takes over. A lease only makes overlap unlikely, not impossible (a holder paused longer
than ``ttl_s`` keeps working after losing it), so the job it guards must be idempotent.
"""

from __future__ import annotations

from redis.asyncio import Redis

# KEYS: lease. ARGV: owner, ttl ms. Takes the lease when free, extends it when ours.
_ACQUIRE = """
local owner = redis.call('GET', KEYS[1])
if owner == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class Lease:
    def __init__(self, redis: Redis, key: str, *, owner: str, ttl_s: float) -> None:
        self._key = key
        self._owner = owner
        self._ttl_ms = int(ttl_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)

    async def hold(self) -> bool:
        """Take the lease if it is free, or renew it if it is ours; True when we hold it.

        Raises the Redis client's errors.
        """
        return bool(await self._acquire(keys=[self._key], args=[self._owner, self._ttl_ms]))
