"""Cached reads that survive MongoDB being away: through the caches, else a stale copy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tripline.common.cache import JSON, TwoLayerCache
from tripline.common.errors import DependencyUnavailable
from tripline.common.logs import get_logger
from tripline.core.stale import StaleCopies, StaleCopy

log = get_logger(__name__)


@dataclass(frozen=True)
class Read:
    """A value read, and the stale copy it came from when the database did not answer."""

    value: JSON
    stale: StaleCopy | None = None

    def headers(self) -> dict[str, str]:
        return self.stale.headers() if self.stale is not None else {}


async def read_through(
    cache: TwoLayerCache,
    stale: StaleCopies,
    key: str,
    load: Callable[[], Awaitable[JSON]],
    *,
    ttl_s: float,
) -> Read:
    """``key`` from the caches or ``load()`` (whose result is also kept as the last known copy).

    When MongoDB does not answer (down, or slower than the query bound), the last known copy is
    returned, marked stale. Raises :class:`DependencyUnavailable` when there is none.
    """

    async def loader() -> JSON:
        value = await load()
        await stale.keep(cache.namespace, key, value)
        return value

    try:
        return Read(await cache.get(key, loader, ttl_s=ttl_s))
    except DependencyUnavailable as exc:
        if exc.dependency != "mongodb":
            raise
        copy = await stale.recall(cache.namespace, key)
        if copy is None:
            raise
        log.info("stale copy served", cache=cache.namespace, age_s=round(copy.age_s, 1))
        return Read(copy.value, copy)
