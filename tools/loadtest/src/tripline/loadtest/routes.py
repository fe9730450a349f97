"""Route classes: the gateway's route table sorted into the classes the SLAs are written for.

One source for the k6 scripts (each call is tagged with its route's class and priority, so the
scripts never keep a copy of the table) and for the platform samples (the gateway's metrics are
labelled by route pattern). No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from tripline.common.ratelimit import Tier
from tripline.gateway.routetable import ROUTES, WRITE_TIMEOUT_S, GatewayRoute
from tripline.gateway.shedding import Priority

CLASSES = ("critical", "read", "write", "payment", "upload", "low")
# The uploads scenario's presigned POST goes straight to storage, past the gateway: its own
# class, measured and reported, with no SLA of ours.
STORAGE = "storage"
MEASURED_CLASSES = (*CLASSES, STORAGE)


def route_class(route: GatewayRoute) -> str:
    """The SLA class of ``route``: its priority first (critical and low are what shedding
    treats apart), then its tier (uploads), then whether it waits on an outside provider (a
    timeout above the ordinary write timeout: payments), then read or write."""
    if route.priority is Priority.CRITICAL:
        return "critical"
    if route.priority is Priority.LOW:
        return "low"
    if route.tier is Tier.UPLOAD:
        return "upload"
    if route.timeout_s > WRITE_TIMEOUT_S:
        return "payment"
    return "read" if route.idempotent else "write"


def route_map(routes: Iterable[GatewayRoute] = ROUTES) -> dict[str, dict[str, str]]:
    """``{"METHOD /pattern": {"class": ..., "priority": ...}}`` for every method of every route,
    as the k6 scripts look calls up."""
    return {
        f"{method} {route.pattern}": {"class": route_class(route), "priority": route.priority.value}
        for route in routes
        for method in sorted(route.methods)
    }


def pattern_classes(routes: Iterable[GatewayRoute] = ROUTES) -> dict[tuple[str, str], str]:
    """``{(method, pattern): class}``: how the gateway's metric labels map to classes."""
    return {
        (method, route.pattern): route_class(route)
        for route in routes
        for method in sorted(route.methods)
    }
