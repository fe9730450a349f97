"""Last known copies of cached records, served (marked stale) while MongoDB does not answer.

The caches forget a record after its TTL and on every change, so they cannot answer a read when
the database is away. Each record read or written is also kept here, in Redis, for a day; a read
that the database cannot answer is served from this copy with the headers ``Tripline-Stale:
true`` and ``Age`` (seconds since the copy was taken), and only fails when there is no copy.

Both operations are best effort and never raise. A hung Redis costs one timeout, not one per
read: the client's guard (:mod:`tripline.common.redis_client`) refuses at once after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripline.common.cache import JSON
from tripline.common.logs import get_logger

log = get_logger(__name__)

KEEP_FOR_S = 86_400
STALE_HEADER = "Tripline-Stale"


@dataclass(frozen=True)
class StaleCopy:
    value: JSON
    age_s: float

    def headers(self) -> dict[str, str]:
        """The response headers that tell a client it reads an old copy."""
        return {STALE_HEADER: "true", "Age": str(max(0, int(self.age_s)))}


def copy_key(namespace: str, key: str) -> str:
    return f"stale:{namespace}:{key}"


class StaleCopies:
    """Keeps and recalls last known copies; see the module docstring."""

    def __init__(
        self,
        redis: Redis,
        *,
        keep_for_s: int = KEEP_FOR_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keep_for_s = keep_for_s
        self._clock = clock

    async def keep(self, namespace: str, key: str, value: JSON) -> None:
        """Remember ``value`` as the last known copy of ``key`` (a None value is not kept)."""
        if value is None:
            return
        text = json.dumps({"v": value, "at": self._clock()}, separators=(",", ":"))
        try:
            await self._redis.set(copy_key(namespace, key), text, ex=self._keep_for_s)
        except (RedisError, OSError) as exc:
            log.warning("stale copy not kept", namespace=namespace, error=repr(exc))

    async def recall(self, namespace: str, key: str) -> StaleCopy | None:
        """The last known copy of ``key``, or None when there is none or Redis cannot tell."""
        try:
            raw = await self._redis.get(copy_key(namespace, key))
        except (RedisError, OSError) as exc:
            log.warning("stale copy not read", namespace=namespace, error=repr(exc))
            return None
        if raw is None:
            return None
        data: Mapping[str, Any] = json.loads(raw)
        return StaleCopy(value=data["v"], age_s=self._clock() - float(data["at"]))
