"""The services the monitor watches: ``name=url`` pairs, one per replica."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Target:
    """One replica of one service: ``service`` names it, ``url`` is its base URL."""

    service: str
    url: str


def parse_targets(entries: Iterable[str]) -> tuple[Target, ...]:
    """``["core=http://core:8081", "tracking=http://t1:8083", ...]`` → targets, in order.

    Raises ``ValueError`` naming the entry for anything but ``name=http(s)://host[:port]``;
    a repeated entry is kept once.
    """
    targets: dict[Target, None] = {}
    for entry in entries:
        name, separator, url = entry.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not separator or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"{entry!r} is not a service=url pair like core=http://core:8081")
        if "?" in url or "#" in url:
            raise ValueError(f"{entry!r}: the URL must not carry a query or fragment")
        targets[Target(name, url)] = None
    return tuple(targets)


def by_service(targets: Iterable[Target]) -> Mapping[str, tuple[Target, ...]]:
    """Group targets by service, keeping the configured order."""
    grouped: dict[str, list[Target]] = {}
    for target in targets:
        grouped.setdefault(target.service, []).append(target)
    return {name: tuple(replicas) for name, replicas in grouped.items()}
