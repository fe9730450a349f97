"""Route classes: every route of the gateway's real table sorted into the class its SLAs are
written for, and the rule's order where a route could fall in two classes."""

from __future__ import annotations

import pytest

from tripline.common.ratelimit import Tier
from tripline.gateway.routetable import (
    ROUTES,
    WEBSOCKET,
    WRITE_TIMEOUT_S,
    GatewayRoute,
    read,
    write,
)
from tripline.gateway.routing import Upstream
from tripline.gateway.shedding import Priority
from tripline.loadtest.routes import CLASSES, pattern_classes, route_class, route_map

# The class of every method of every route of the contract, as the owners' SLAs read them.
EXPECTED = {
    "GET /api/users/me": "read",
    "HEAD /api/users/me": "read",
    "PATCH /api/users/me": "write",
    "GET /api/users/{user_id}": "read",
    "HEAD /api/users/{user_id}": "read",
    "POST /api/trips": "write",
    "GET /api/trips/search": "read",
    "HEAD /api/trips/search": "read",
    "GET /api/trips/{trip_id}": "read",
    "HEAD /api/trips/{trip_id}": "read",
    "POST /api/trips/{trip_id}/status": "write",
    "POST /api/trips/{trip_id}/sos": "critical",
    "POST /api/trips/{trip_id}/payment": "payment",
    "POST /api/analytics/events": "low",
    "POST /api/tracking/location": "critical",
    "GET /api/tracking/trips/{trip_id}/location": "critical",
    "HEAD /api/tracking/trips/{trip_id}/location": "critical",
    f"{WEBSOCKET} /ws/trips/{{trip_id}}": "critical",
    "POST /api/uploads": "upload",
    "POST /api/uploads/{upload_id}/complete": "upload",
    "GET /api/uploads/{upload_id}": "upload",
    "HEAD /api/uploads/{upload_id}": "upload",
    "GET /api/admin/{path:path}": "read",
    "HEAD /api/admin/{path:path}": "read",
}


def the_route(method: str, pattern: str) -> GatewayRoute:
    (found,) = [r for r in ROUTES if r.pattern == pattern and method in r.methods]
    return found


@pytest.mark.parametrize(("call", "cls"), sorted(EXPECTED.items()))
def test_each_real_route_has_its_class(call: str, cls: str) -> None:
    method, pattern = call.split(" ", 1)
    assert route_class(the_route(method, pattern)) == cls


def test_the_map_covers_every_method_of_every_route_and_nothing_else() -> None:
    mapped = route_map()
    assert set(mapped) == set(EXPECTED)
    assert {call: entry["class"] for call, entry in mapped.items()} == EXPECTED


def test_the_map_gives_each_call_its_routes_priority() -> None:
    mapped = route_map()
    for route in ROUTES:
        for method in route.methods:
            assert mapped[f"{method} {route.pattern}"]["priority"] == route.priority.value
    assert mapped["POST /api/trips/{trip_id}/sos"]["priority"] == "critical"
    assert mapped["POST /api/analytics/events"]["priority"] == "low"
    assert mapped["GET /api/trips/{trip_id}"]["priority"] == "normal"


def test_every_class_is_one_the_slas_know_and_every_sla_class_has_a_route() -> None:
    used = {entry["class"] for entry in route_map().values()}
    assert used == set(CLASSES)


def test_pattern_classes_key_the_same_classes_by_method_and_pattern() -> None:
    by_pattern = pattern_classes()
    assert by_pattern == {tuple(call.split(" ", 1)): cls for call, cls in EXPECTED.items()}
    assert by_pattern[("GET", "/api/trips/{trip_id}")] == "read"


def test_priority_comes_before_tier_and_timeout() -> None:
    critical_upload = write(
        "POST", "/api/x", Upstream.UPLOAD, priority=Priority.CRITICAL, tier=Tier.UPLOAD
    )
    low_slow = write("POST", "/api/y", Upstream.CORE, priority=Priority.LOW, timeout_s=30.0)
    assert route_class(critical_upload) == "critical"
    assert route_class(low_slow) == "low"


def test_the_upload_tier_comes_before_a_long_timeout() -> None:
    slow_upload = write("POST", "/api/x", Upstream.UPLOAD, tier=Tier.UPLOAD, timeout_s=30.0)
    assert route_class(slow_upload) == "upload"


def test_only_a_timeout_above_the_write_timeout_makes_a_payment() -> None:
    at_limit = write("POST", "/api/x", Upstream.CORE, timeout_s=WRITE_TIMEOUT_S)
    above = write("POST", "/api/x", Upstream.CORE, timeout_s=WRITE_TIMEOUT_S + 0.5)
    slow_read = read("/api/x", Upstream.CORE, timeout_s=WRITE_TIMEOUT_S + 0.5)
    assert route_class(at_limit) == "write"
    assert route_class(above) == "payment"
    assert route_class(slow_read) == "payment"


def test_a_route_map_of_given_routes_lists_each_method() -> None:
    routes = [read("/api/a", Upstream.CORE), write("DELETE", "/api/a", Upstream.CORE)]
    assert route_map(routes) == {
        "DELETE /api/a": {"class": "write", "priority": "normal"},
        "GET /api/a": {"class": "read", "priority": "normal"},
        "HEAD /api/a": {"class": "read", "priority": "normal"},
    }
