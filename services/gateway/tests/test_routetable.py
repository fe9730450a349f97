from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tripline.common.auth import Role
from tripline.common.errors import MethodNotAllowed, NotFound
from tripline.common.ratelimit import Tier
from tripline.gateway.routetable import (
    READ_TIMEOUT_S,
    ROUTES,
    WEBSOCKET,
    WRITE_TIMEOUT_S,
    GatewayRoute,
    RouteTable,
    compile_pattern,
    prefix_of,
    read,
    write,
)
from tripline.gateway.routing import Upstream
from tripline.gateway.shedding import Priority

ANYONE = frozenset(Role)
DRIVER = frozenset({Role.DRIVER})
RIDER = frozenset({Role.RIDER})
PARTY = frozenset({Role.RIDER, Role.DRIVER})
ADMIN = frozenset({Role.ADMIN})
CORE, UPLOAD, TRACKING, MONITOR = (
    Upstream.CORE,
    Upstream.UPLOAD,
    Upstream.TRACKING,
    Upstream.MONITOR,
)
NORMAL, CRITICAL, LOW = Priority.NORMAL, Priority.CRITICAL, Priority.LOW


@dataclass(frozen=True)
class Contract:
    """One row of DESIGN.md, "External contract", for one method and an example path.

    "Who" becomes the roles the gateway can check: a trip's rider, driver or parties are
    checked by the service that knows the trip; the gateway narrows by role only where the
    contract names a single one ("trip's rider" is a rider).
    """

    method: str
    path: str
    pattern: str
    upstream: Upstream
    roles: frozenset[Role]
    priority: Priority
    tier: Tier | None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


CONTRACT = [
    Contract("GET", "/api/users/me", "/api/users/me", CORE, ANYONE, NORMAL, Tier.STANDARD),
    Contract("PATCH", "/api/users/me", "/api/users/me", CORE, ANYONE, NORMAL, Tier.STANDARD),
    Contract("GET", "/api/users/u-1", "/api/users/{user_id}", CORE, ANYONE, NORMAL, Tier.STANDARD),
    Contract("POST", "/api/trips", "/api/trips", CORE, ANYONE, NORMAL, Tier.STANDARD),
    Contract("GET", "/api/trips/t-1", "/api/trips/{trip_id}", CORE, ANYONE, NORMAL, Tier.STANDARD),
    Contract("GET", "/api/trips/search", "/api/trips/search", CORE, ANYONE, NORMAL, Tier.STANDARD),
    Contract(
        "POST",
        "/api/trips/t-1/status",
        "/api/trips/{trip_id}/status",
        CORE,
        PARTY,
        NORMAL,
        Tier.STANDARD,
    ),
    Contract(
        "POST",
        "/api/trips/t-1/sos",
        "/api/trips/{trip_id}/sos",
        CORE,
        PARTY,
        CRITICAL,
        Tier.CRITICAL,
    ),
    Contract(
        "POST",
        "/api/trips/t-1/payment",
        "/api/trips/{trip_id}/payment",
        CORE,
        RIDER,
        NORMAL,
        Tier.STANDARD,
    ),
    Contract(
        "POST",
        "/api/tracking/location",
        "/api/tracking/location",
        TRACKING,
        DRIVER,
        CRITICAL,
        Tier.CRITICAL,
    ),
    Contract(
        "GET",
        "/api/tracking/trips/t-1/location",
        "/api/tracking/trips/{trip_id}/location",
        TRACKING,
        ANYONE,
        CRITICAL,
        Tier.CRITICAL,
    ),
    Contract(
        WEBSOCKET, "/ws/trips/t-1", "/ws/trips/{trip_id}", TRACKING, ANYONE, CRITICAL, Tier.CRITICAL
    ),
    Contract("POST", "/api/uploads", "/api/uploads", UPLOAD, DRIVER, NORMAL, Tier.UPLOAD),
    Contract(
        "POST",
        "/api/uploads/up-1/complete",
        "/api/uploads/{upload_id}/complete",
        UPLOAD,
        DRIVER,
        NORMAL,
        Tier.UPLOAD,
    ),
    Contract(
        "GET", "/api/uploads/up-1", "/api/uploads/{upload_id}", UPLOAD, DRIVER, NORMAL, Tier.UPLOAD
    ),
    Contract(
        "POST", "/api/analytics/events", "/api/analytics/events", CORE, ANYONE, LOW, Tier.STANDARD
    ),
    *(
        Contract(
            "GET",
            f"/api/admin/{page}",
            "/api/admin/{path:path}",
            MONITOR,
            ADMIN,
            NORMAL,
            Tier.STANDARD,
        )
        for page in ["queues", "health", "alerts", "metrics"]
    ),
]

TABLE = RouteTable()


@pytest.mark.parametrize("row", CONTRACT, ids=[row.id for row in CONTRACT])
def test_every_contract_route_resolves_as_the_contract_says(row: Contract) -> None:
    route = TABLE.match(row.method, row.path).route
    assert route.pattern == row.pattern
    assert route.upstream is row.upstream
    assert route.roles == row.roles
    assert route.priority is row.priority
    assert route.tier is row.tier


def test_the_table_holds_the_contract_and_nothing_else() -> None:
    contract = {(row.method, row.pattern) for row in CONTRACT}
    table = {
        (method, route.pattern) for route in ROUTES for method in route.methods if method != "HEAD"
    }
    assert table == contract


def test_the_gateway_serves_health_itself() -> None:
    with pytest.raises(NotFound):
        TABLE.match("GET", "/health")


def test_reads_are_idempotent_and_writes_are_not() -> None:
    for route in ROUTES:
        assert route.idempotent is ("GET" in route.methods), route.pattern


def test_timeouts() -> None:
    timeouts = {route.pattern: route.timeout_s for route in ROUTES}
    assert timeouts["/api/trips/{trip_id}"] == READ_TIMEOUT_S
    assert timeouts["/api/trips"] == WRITE_TIMEOUT_S
    assert timeouts["/api/trips/{trip_id}/payment"] == 15.0
    assert timeouts["/api/uploads/{upload_id}/complete"] == 15.0
    assert timeouts["/api/admin/{path:path}"] == WRITE_TIMEOUT_S


def test_only_the_trip_socket_is_a_websocket_route() -> None:
    assert [route.pattern for route in ROUTES if route.websocket] == ["/ws/trips/{trip_id}"]
    assert TABLE.match(WEBSOCKET, "/ws/trips/t-1").route.methods == {WEBSOCKET}


def test_patterns_lists_every_route_in_order() -> None:
    assert TABLE.patterns() == [route.pattern for route in ROUTES]


# Matching


def test_search_is_not_a_trip_id() -> None:
    found = TABLE.match("GET", "/api/trips/search")
    assert found.route.pattern == "/api/trips/search"
    assert found.params == {}


def test_a_trip_id_that_merely_starts_like_search_is_a_trip() -> None:
    found = TABLE.match("GET", "/api/trips/searching")
    assert found.route.pattern == "/api/trips/{trip_id}"
    assert found.params == {"trip_id": "searching"}


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/users/u-42", {"user_id": "u-42"}),
        ("GET", "/api/trips/t-1", {"trip_id": "t-1"}),
        ("POST", "/api/trips/t-1/sos", {"trip_id": "t-1"}),
        ("GET", "/api/tracking/trips/t%20x/location", {"trip_id": "t%20x"}),
        ("POST", "/api/uploads/up-9/complete", {"upload_id": "up-9"}),
        (WEBSOCKET, "/ws/trips/t-7", {"trip_id": "t-7"}),
        ("GET", "/api/users/me", {}),
    ],
)
def test_parameters_are_extracted(method: str, path: str, params: dict[str, str]) -> None:
    assert TABLE.match(method, path).params == params


@pytest.mark.parametrize(
    ("path", "rest"),
    [
        ("/api/admin/queues", "queues"),
        ("/api/admin/queues/ingest/depth", "queues/ingest/depth"),
        ("/api/admin/a//b/", "a//b/"),
    ],
)
def test_a_path_parameter_takes_the_rest_of_the_path(path: str, rest: str) -> None:
    found = TABLE.match("GET", path)
    assert found.route.pattern == "/api/admin/{path:path}"
    assert found.params == {"path": rest}


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/api",
        "/api/",
        "/api/nothing",
        "/api/nothing/trips",
        "/api/tripsx",
        "/api/trip/t-1",
        "/api/trips/",
        "/api/trips/t-1/",
        "/api/trips/t-1/unknown",
        "/api/trips//sos",
        "/api//trips",
        "/api/users/me/",
        "/api/users/me/x",
        "/api/admin",
        "/api/admin/",
        "/api/tracking/trips/t-1",
        "/API/USERS/ME",
        "//api/users/me",
        "/v1/api/users/me",
        "api/users/me",
        "/ws",
        "/ws/trips",
        "/metrics",
        "/health",
    ],
)
def test_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(NotFound):
        TABLE.match("GET", path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/trips/../admin/x"),
        ("GET", "/api/./users/me"),
        ("GET", "/api/users/./me"),
        ("GET", "/api/trips/.."),
        ("GET", "/api/trips/."),
        ("POST", "/api/trips/../status"),
        ("POST", "/api/trips/./sos"),
        ("GET", "/api/admin/.."),
        ("GET", "/api/admin/../trips/t-1"),
        ("GET", "/api/admin/queues/./x"),
        ("GET", "/api/admin/queues/../../users/me"),
        (WEBSOCKET, "/ws/trips/.."),
        ("PATCH", "/api/users/../users/me"),
    ],
)
def test_paths_with_dot_segments_are_not_found(method: str, path: str) -> None:
    with pytest.raises(NotFound):
        TABLE.match(method, path)


@pytest.mark.parametrize("trip_id", ["...", ".x", "x.", "..x"])
def test_segments_that_only_contain_dots_are_fine(trip_id: str) -> None:
    assert TABLE.match("GET", f"/api/trips/{trip_id}").params == {"trip_id": trip_id}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/users/me", "GET, HEAD, PATCH"),
        ("POST", "/api/users/u-1", "GET, HEAD"),
        ("GET", "/api/trips", "POST"),
        ("PUT", "/api/trips/t-1", "GET, HEAD"),
        ("POST", "/api/trips/search", "GET, HEAD"),
        ("GET", "/api/trips/t-1/sos", "POST"),
        ("HEAD", "/api/trips/t-1/payment", "POST"),
        ("GET", "/api/tracking/location", "POST"),
        ("GET", "/api/uploads", "POST"),
        ("DELETE", "/api/admin/queues", "GET, HEAD"),
        ("OPTIONS", "/api/analytics/events", "POST"),
    ],
)
def test_a_wrong_method_is_not_allowed_and_says_which_are(
    method: str, path: str, allow: str
) -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        TABLE.match(method, path)
    assert caught.value.status == 405
    assert caught.value.headers == {"Allow": allow}


@pytest.mark.parametrize(
    "path", ["/api/users/me", "/api/trips", "/api/trips/t-1", "/api/trips/t-1/sos", "/api/admin/x"]
)
def test_a_websocket_on_an_http_path_is_not_found(path: str) -> None:
    with pytest.raises(NotFound):
        TABLE.match(WEBSOCKET, path)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_http_on_the_websocket_path_is_not_found(method: str) -> None:
    with pytest.raises(NotFound):
        TABLE.match(method, "/ws/trips/t-1")


@pytest.mark.parametrize(
    "row", [row for row in CONTRACT if row.method == "GET"], ids=lambda row: row.id
)
def test_head_is_allowed_wherever_get_is(row: Contract) -> None:
    assert TABLE.match("HEAD", row.path).route is TABLE.match("GET", row.path).route


def test_every_get_route_takes_head() -> None:
    for route in ROUTES:
        assert ("GET" in route.methods) == ("HEAD" in route.methods), route.pattern


def test_a_custom_table_matches_only_its_routes() -> None:
    table = RouteTable([read("/api/things/{thing_id}", CORE)])
    assert table.match("GET", "/api/things/1").params == {"thing_id": "1"}
    with pytest.raises(NotFound):
        table.match("GET", "/api/users/me")


def test_the_first_route_in_order_wins() -> None:
    first = read("/api/things/{thing_id}", CORE)
    second = read("/api/things/special", MONITOR)
    assert RouteTable([first, second]).match("GET", "/api/things/special").route is first
    assert RouteTable([second, first]).match("GET", "/api/things/special").route is second


def test_read_and_write_build_routes() -> None:
    got = read("/api/x", CORE)
    assert got.methods == {"GET", "HEAD"}
    assert got.idempotent
    assert got.timeout_s == READ_TIMEOUT_S
    assert (got.roles, got.priority, got.tier) == (ANYONE, NORMAL, Tier.STANDARD)
    put = write("PUT", "/api/x", TRACKING, roles=ADMIN, priority=LOW, tier=None, timeout_s=1.0)
    assert put == GatewayRoute(frozenset({"PUT"}), "/api/x", TRACKING, ADMIN, LOW, None, 1.0)
    assert not put.idempotent
    assert not put.websocket


# Property: whatever the path, the answer is a true match or a 404/405.

SEGMENTS = [
    "api",
    "ws",
    "trips",
    "users",
    "me",
    "search",
    "admin",
    "tracking",
    "location",
    "uploads",
    "analytics",
    "events",
    "status",
    "sos",
    "payment",
    "complete",
    "t-1",
    "",
    ".",
    "..",
    "%2F",
    "x\ny",
]
METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", WEBSOCKET]
route_like_paths = st.lists(
    st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=4)), min_size=1, max_size=7
).map(lambda segments: "/" + "/".join(segments))
any_paths = st.one_of(route_like_paths, st.text())


@given(method=st.sampled_from(METHODS), path=any_paths)
@example(method="GET", path="/api/trips/search")
@example(method="GET", path="/api/admin/x\ny")
@example(method="POST", path="/api/trips/../sos")
def test_match_answers_a_true_match_or_not_found_or_not_allowed(method: str, path: str) -> None:
    try:
        found = TABLE.match(method, path)
    except NotFound:
        return
    except MethodNotAllowed as error:
        allowed = set(error.headers["Allow"].split(", "))
        assert method not in allowed
        assert any(route.regex.fullmatch(path) for route in ROUTES)
        return
    full = found.route.regex.fullmatch(path)
    assert full is not None
    assert method in found.route.methods
    assert found.params == full.groupdict()


@given(method=st.sampled_from(METHODS), path=any_paths)
def test_match_agrees_with_trying_every_route_in_order(method: str, path: str) -> None:
    """The prefix index is only a shortcut: it finds what a scan of the whole table finds."""
    dots = any(segment in {".", ".."} for segment in path.split("/"))
    matching = [route for route in ROUTES if route.regex.fullmatch(path)] if not dots else []
    expected = next((route for route in matching if method in route.methods), None)
    try:
        found = TABLE.match(method, path)
    except NotFound:
        assert expected is None
        assert method == WEBSOCKET or all(route.websocket for route in matching)
        return
    except MethodNotAllowed:
        assert expected is None
        assert matching
        return
    assert found.route is expected


# compile_pattern and prefix_of


def test_compile_pattern_matches_one_segment_per_parameter() -> None:
    regex = compile_pattern("/api/trips/{trip_id}/status")
    found = regex.fullmatch("/api/trips/t-1/status")
    assert found is not None
    assert found.groupdict() == {"trip_id": "t-1"}
    assert regex.fullmatch("/api/trips/a/b/status") is None
    assert regex.fullmatch("/api/trips//status") is None


def test_compile_pattern_with_several_parameters() -> None:
    found = compile_pattern("/a/{one}/b/{two}").fullmatch("/a/1/b/2")
    assert found is not None
    assert found.groupdict() == {"one": "1", "two": "2"}


def test_compile_pattern_path_parameter_takes_several_segments() -> None:
    regex = compile_pattern("/api/admin/{path:path}")
    found = regex.fullmatch("/api/admin/a/b/c")
    assert found is not None
    assert found.groupdict() == {"path": "a/b/c"}
    assert regex.fullmatch("/api/admin/") is None


def test_compile_pattern_takes_literal_text_literally() -> None:
    regex = compile_pattern("/api/v1.0/x+y")
    assert regex.fullmatch("/api/v1.0/x+y") is not None
    assert regex.fullmatch("/api/v1x0/x+y") is None
    assert regex.fullmatch("/api/v1.0/xxy") is None


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        ("/api/trips/1/sos", "/api/trips"),
        ("/api/trips/1", "/api/trips"),
        ("/api/trips/", "/api/trips"),
        ("/api/trips", "/api/trips"),
        ("/ws/trips/1", "/ws/trips"),
        ("/api/admin/{path:path}", "/api/admin"),
    ],
)
def test_prefix_of_is_the_first_two_segments(path: str, prefix: str) -> None:
    assert prefix_of(path) == prefix


def test_every_route_is_filed_under_the_prefix_of_its_paths() -> None:
    for row in CONTRACT:
        route = TABLE.match(row.method, row.path).route
        assert prefix_of(route.pattern) == prefix_of(row.path)


@given(st.text())
def test_prefix_of_is_a_prefix(path: str) -> None:
    assert path.startswith(prefix_of(path))
