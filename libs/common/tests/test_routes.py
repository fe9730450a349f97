from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

from tripline.common.routes import UNMATCHED, route_template


async def endpoint(_request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def ws_endpoint(_websocket: Any) -> None:
    return None


APP = Starlette(
    routes=[
        Route("/health", endpoint),
        Route("/api/trips/{trip_id}", endpoint, methods=["GET", "PUT"]),
        Route("/api/trips/{trip_id}/stops/{n:int}", endpoint),
        Mount("/static", app=PlainTextResponse("static")),
        WebSocketRoute("/ws/trips/{trip_id}", ws_endpoint),
    ]
)
TEMPLATES = {
    "/health",
    "/api/trips/{trip_id}",
    "/api/trips/{trip_id}/stops/{n:int}",
    "/static/{path}",
    "/ws/trips/{trip_id}",
}


def scope(path: str, *, kind: str = "http", method: str = "GET") -> dict[str, Any]:
    result: dict[str, Any] = {"type": kind, "path": path, "root_path": "", "headers": []}
    if kind == "http":
        result["method"] = method
    return result


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/health", "/health"),
        ("/api/trips/abc-123", "/api/trips/{trip_id}"),
        ("/api/trips/abc/stops/3", "/api/trips/{trip_id}/stops/{n:int}"),
        ("/static/css/site.css", "/static/{path}"),
        ("/static/", "/static/{path}"),
    ],
)
def test_matched_paths_give_their_template(path: str, expected: str) -> None:
    assert route_template(APP, scope(path)) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/api/trips",
        "/api/trips/",
        "/api/trips/a/b",
        "/api/trips/abc/stops/three",
        "/ws/trips/1",
        "/healthz",
    ],
)
def test_unmatched_paths_collapse_into_one_label(path: str) -> None:
    assert route_template(APP, scope(path)) == UNMATCHED


def test_websocket_scopes_match_websocket_routes_only() -> None:
    assert route_template(APP, scope("/ws/trips/9", kind="websocket")) == "/ws/trips/{trip_id}"
    assert route_template(APP, scope("/api/trips/9", kind="websocket")) == UNMATCHED


def test_route_with_another_method_is_not_labelled_as_a_match() -> None:
    assert route_template(APP, scope("/api/trips/9", method="PUT")) == "/api/trips/{trip_id}"
    assert route_template(APP, scope("/api/trips/9", method="DELETE")) == UNMATCHED


def test_route_template_does_not_modify_the_scope() -> None:
    original = scope("/api/trips/9")
    copy = dict(original)
    route_template(APP, original)
    assert original == copy


segment = st.text(min_size=1).filter(lambda text: "/" not in text)
any_path = st.text().map(lambda text: "/" + text)


@given(path=any_path, method=st.sampled_from(["GET", "POST", "DELETE", "HEAD"]))
def test_route_template_never_returns_a_raw_path(path: str, method: str) -> None:
    result = route_template(APP, scope(path, method=method))
    assert result in TEMPLATES | {UNMATCHED}


@given(name=segment)
def test_path_parameters_never_leak_into_the_label(name: str) -> None:
    assert route_template(APP, scope(f"/api/trips/{name}")) == "/api/trips/{trip_id}"
    assert route_template(APP, scope(f"/unknown/{name}")) == UNMATCHED
