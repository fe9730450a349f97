"""The gateway's one route table: every route of the external contract, declared once.

Each entry says which upstream serves it, which roles may call it, its priority under load, its
rate-limit tier, how long the upstream may take and whether a failed attempt may be repeated.
Authentication, role checks, limits, shedding, proxying and the metrics' route label all read
it; a path it does not list is answered 404 by the gateway itself, never proxied. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tripline.common.auth import Role
from tripline.common.errors import MethodNotAllowed, NotFound
from tripline.common.ratelimit import Tier
from tripline.gateway.routing import Upstream
from tripline.gateway.shedding import Priority

ANY_ROLE = frozenset(Role)
WEBSOCKET = "WEBSOCKET"
# A parameter is one whole segment; `{name:path}` takes the rest of the path.
PARAMETER = re.compile(r"\{(?P<name>[a-z_]+)(?::(?P<kind>path))?\}")
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GatewayRoute:
    """One route of the contract.

    ``idempotent`` routes may be attempted again after a timeout or a dropped connection; any
    route moves on to another replica when the connection is refused, since nothing was sent.
    ``tier`` ``None`` means the route is not rate limited.
    """

    methods: frozenset[str]
    pattern: str
    upstream: Upstream
    roles: frozenset[Role] = ANY_ROLE
    priority: Priority = Priority.NORMAL
    tier: Tier | None = Tier.STANDARD
    timeout_s: float = WRITE_TIMEOUT_S
    idempotent: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_pattern(self.pattern))

    @property
    def websocket(self) -> bool:
        return WEBSOCKET in self.methods


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/api/trips/{trip_id}`` → a regex matching one non-empty segment per parameter."""
    parts: list[str] = []
    position = 0
    for parameter in PARAMETER.finditer(pattern):
        parts.append(re.escape(pattern[position : parameter.start()]))
        segment = ".+" if parameter["kind"] == "path" else "[^/]+"
        parts.append(f"(?P<{parameter['name']}>{segment})")
        position = parameter.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


def read(
    pattern: str,
    upstream: Upstream,
    *,
    roles: frozenset[Role] = ANY_ROLE,
    priority: Priority = Priority.NORMAL,
    tier: Tier | None = Tier.STANDARD,
    timeout_s: float = READ_TIMEOUT_S,
) -> GatewayRoute:
    """A ``GET`` (and ``HEAD``) route: idempotent, with the shorter read timeout by default."""
    methods = frozenset({"GET", "HEAD"})
    return GatewayRoute(methods, pattern, upstream, roles, priority, tier, timeout_s, True)


def write(
    method: str,
    pattern: str,
    upstream: Upstream,
    *,
    roles: frozenset[Role] = ANY_ROLE,
    priority: Priority = Priority.NORMAL,
    tier: Tier | None = Tier.STANDARD,
    timeout_s: float = WRITE_TIMEOUT_S,
) -> GatewayRoute:
    """A route that changes something: repeated only when the client sent an Idempotency-Key."""
    methods = frozenset({method})
    return GatewayRoute(methods, pattern, upstream, roles, priority, tier, timeout_s, False)


DRIVER = frozenset({Role.DRIVER})
RIDER = frozenset({Role.RIDER})
PARTY = frozenset({Role.RIDER, Role.DRIVER})
ADMIN = frozenset({Role.ADMIN})
CRITICAL, LOW = Priority.CRITICAL, Priority.LOW
CORE, UPLOADS, TRACKING, MONITOR = (
    Upstream.CORE,
    Upstream.UPLOAD,
    Upstream.TRACKING,
    Upstream.MONITOR,
)

# The contract (DESIGN.md, "External contract"). Order matters only where two patterns could
# match one path: the literal `/api/trips/search` comes before `/api/trips/{trip_id}`.
ROUTES: tuple[GatewayRoute, ...] = (
    read("/api/users/me", CORE),
    write("PATCH", "/api/users/me", CORE),
    read("/api/users/{user_id}", CORE),
    write("POST", "/api/trips", CORE),
    read("/api/trips/search", CORE),
    read("/api/trips/{trip_id}", CORE),
    write("POST", "/api/trips/{trip_id}/status", CORE, roles=PARTY),
    write(
        "POST",
        "/api/trips/{trip_id}/sos",
        CORE,
        roles=PARTY,
        priority=CRITICAL,
        tier=Tier.CRITICAL,
    ),
    write("POST", "/api/trips/{trip_id}/payment", CORE, roles=RIDER, timeout_s=15.0),
    write("POST", "/api/analytics/events", CORE, priority=LOW),
    write(
        "POST",
        "/api/tracking/location",
        TRACKING,
        roles=DRIVER,
        priority=CRITICAL,
        tier=Tier.CRITICAL,
    ),
    read("/api/tracking/trips/{trip_id}/location", TRACKING, priority=CRITICAL, tier=Tier.CRITICAL),
    write(WEBSOCKET, "/ws/trips/{trip_id}", TRACKING, priority=CRITICAL, tier=Tier.CRITICAL),
    write("POST", "/api/uploads", UPLOADS, roles=DRIVER, tier=Tier.UPLOAD),
    write(
        "POST",
        "/api/uploads/{upload_id}/complete",
        UPLOADS,
        roles=DRIVER,
        tier=Tier.UPLOAD,
        timeout_s=15.0,
    ),
    read("/api/uploads/{upload_id}", UPLOADS, roles=DRIVER, tier=Tier.UPLOAD),
    read("/api/admin/{path:path}", MONITOR, roles=ADMIN, timeout_s=WRITE_TIMEOUT_S),
)


@dataclass(frozen=True)
class RouteMatch:
    route: GatewayRoute
    params: Mapping[str, str]


class RouteTable:
    """Finds the route of a request: :meth:`match` answers a match or raises the 404/405."""

    def __init__(self, routes: Iterable[GatewayRoute] = ROUTES) -> None:
        self.routes: tuple[GatewayRoute, ...] = tuple(routes)
        # Candidates by the first two segments (`/api/trips`), so a request tries a handful of
        # patterns instead of the whole table.
        self._by_prefix: dict[str, list[GatewayRoute]] = {}
        for route in self.routes:
            prefix = prefix_of(route.pattern)
            if "{" in prefix:
                raise ValueError(f"{route.pattern}: the first two segments must be literal")
            self._by_prefix.setdefault(prefix, []).append(route)

    def match(self, method: str, path: str) -> RouteMatch:
        """Return the route for ``method`` (``WEBSOCKET`` for an upgrade) and ``path``.

        Raises :class:`NotFound` when no route has this path (paths with ``.`` or ``..``
        segments included: the upstream client would normalise them into another service's
        route) and :class:`MethodNotAllowed`, with ``Allow``, when routes have the path but
        not the method.
        """
        candidates = self._by_prefix.get(prefix_of(path), ())
        allowed: set[str] = set()
        if candidates and not has_dot_segments(path):
            for route in candidates:
                found = route.regex.fullmatch(path)
                if found is None:
                    continue
                if method in route.methods:
                    return RouteMatch(route, found.groupdict())
                allowed |= route.methods
        if method == WEBSOCKET or not allowed - {WEBSOCKET}:
            raise NotFound(f"nothing is served at {path}")
        allow = ", ".join(sorted(allowed - {WEBSOCKET}))
        raise MethodNotAllowed(f"{path} accepts {allow}", headers={"Allow": allow})

    def patterns(self) -> Sequence[str]:
        return [route.pattern for route in self.routes]


def prefix_of(path: str) -> str:
    """The first two segments of ``path``: ``/api/trips/1/sos`` → ``/api/trips``; a shorter
    path is its own prefix."""
    first = path.find("/", 1)
    if first < 0:
        return path
    second = path.find("/", first + 1)
    return path if second < 0 else path[:second]


def has_dot_segments(path: str) -> bool:
    return any(segment in {".", ".."} for segment in path.split("/"))
