from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

from tripline.common.routes import ROUTE_LABEL_KEY, UNMATCHED, handled_route_label


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
    result: dict[str, Any] = {
        "type": kind,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    if kind == "http":
        result["method"] = method
    return result


async def label(path: str, *, kind: str = "http", method: str = "GET") -> str:
    """Let the app answer ``path``, then read the label from the scope it was given."""
    handled = scope(path, kind=kind, method=method)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if kind == "websocket":
            return {"type": "websocket.connect"}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await APP(handled, receive, send)
    if kind == "http":
        assert sent, "the app sent nothing"
    return handled_route_label(handled)


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
async def test_matched_paths_give_their_template(path: str, expected: str) -> None:
    assert await label(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/api/trips",
        "/api/trips/a/b",
        "/api/trips/abc/stops/three",
        "/ws/trips/1",
        "/healthz",
    ],
)
async def test_unmatched_paths_collapse_into_one_label(path: str) -> None:
    assert await label(path) == UNMATCHED


async def test_websocket_scopes_match_websocket_routes_only() -> None:
    assert await label("/ws/trips/9", kind="websocket") == "/ws/trips/{trip_id}"
    assert await label("/api/trips/9", kind="websocket") == UNMATCHED


async def test_a_refused_method_is_labelled_with_its_route() -> None:
    # 405 answers come from a known route: the label stays bounded.
    assert await label("/api/trips/9", method="DELETE") == "/api/trips/{trip_id}"


def test_a_label_set_by_the_app_itself_wins() -> None:
    assert handled_route_label({ROUTE_LABEL_KEY: "/api/trips/{id}"}) == "/api/trips/{id}"


def test_a_scope_no_route_took_is_unmatched() -> None:
    assert handled_route_label(scope("/api/trips/9")) == UNMATCHED


segment = st.text(min_size=1).filter(lambda text: "/" not in text)
any_path = st.text().map(lambda text: "/" + text)


@settings(max_examples=50)
@given(path=any_path, method=st.sampled_from(["GET", "POST", "DELETE", "HEAD"]))
async def test_the_label_is_never_a_raw_path(path: str, method: str) -> None:
    assert await label(path, method=method) in TEMPLATES | {UNMATCHED}


@settings(max_examples=50)
@given(name=segment)
async def test_path_parameters_never_leak_into_the_label(name: str) -> None:
    assert await label(f"/api/trips/{name}") == "/api/trips/{trip_id}"
    assert await label(f"/unknown/{name}") == UNMATCHED
