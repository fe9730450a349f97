from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tripline.common.app import websocket_close_code
from tripline.common.errors import (
    Conflict,
    DependencyUnavailable,
    Forbidden,
    MalformedRequest,
    NotFound,
    TriplineError,
    Unauthorized,
    UpstreamTimeout,
    ValidationFailed,
)
from tripline.common.health import Health
from tripline.common.settings import ServiceSettings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
ERRORS: dict[str, TriplineError] = {
    "malformed": MalformedRequest("bad bytes"),
    "unauthorized": Unauthorized("no token"),
    "forbidden": Forbidden("riders only"),
    "missing": NotFound("no such trip"),
    "conflict": Conflict("already accepted", extra={"trip_id": "t-1"}),
    "invalid": ValidationFailed("1 bad", errors=[{"loc": "a", "msg": "m", "type": "t"}]),
    "dependency": DependencyUnavailable("redis", retry_after=3),
    "upstream": UpstreamTimeout("core took too long"),
}

INSTANCE_HEADER = "tripline-instance"


def raiser(error: TriplineError) -> Any:
    async def endpoint(_request: Request) -> Response:
        raise error

    return endpoint


async def crash(_request: Request) -> Response:
    raise RuntimeError("db password is hunter2")


async def teapot(_request: Request) -> Response:
    raise HTTPException(418, "short and stout", headers={"X-Brew": "earl-grey"})


async def ok(request: Request) -> Response:
    return JSONResponse({"opened": request.app.state.opened})


async def ws_rejects(websocket: WebSocket) -> None:
    raise Unauthorized("send a token")


async def ws_forbids_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    raise Forbidden("drivers only")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.opened = True
    yield
    app.state.opened = False


ROUTES = [
    *(Route(f"/err/{name}", raiser(error)) for name, error in ERRORS.items()),
    Route("/crash", crash),
    Route("/teapot", teapot),
    Route("/ok", ok, methods=["GET"]),
    WebSocketRoute("/ws/reject", ws_rejects),
    WebSocketRoute("/ws/after", ws_forbids_after_accept),
]


@pytest.fixture
def app(build_app: Any) -> Starlette:
    built: Starlette = build_app(ROUTES, lifespan=lifespan)
    return built


@pytest.mark.parametrize("name", list(ERRORS))
async def test_tripline_errors_become_problem_responses(
    app: Starlette, serve: Any, name: str
) -> None:
    error = ERRORS[name]
    async with serve(app) as client:
        response = await client.get(f"/err/{name}")
    assert response.status_code == error.status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers[INSTANCE_HEADER] == "t/i"
    body = response.json()
    assert body["type"] == error.type_uri
    assert (body["title"], body["status"], body["detail"]) == (
        error.title,
        error.status,
        error.detail,
    )
    assert body["instance"] == f"/err/{name}"
    for key, value in error.extra.items():
        assert body[key] == value
    for key, value in error.headers.items():
        assert response.headers[key] == value


async def test_unexpected_exception_is_a_500_problem_that_leaks_nothing(
    app: Starlette, serve: Any
) -> None:
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get("/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/internal-error")
    assert body["status"] == 500
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text


async def test_unexpected_500_carries_the_instance_header(app: Starlette, serve: Any) -> None:
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get("/crash")
    assert response.headers.get(INSTANCE_HEADER) == "t/i"


async def test_unexpected_500_reports_the_request_trace_id(app: Starlette, serve: Any) -> None:
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get("/crash", headers={"traceparent": TRACEPARENT})
    assert response.json()["trace_id"] == TRACE_ID


async def test_unknown_path_is_a_not_found_problem(app: Starlette, serve: Any) -> None:
    async with serve(app) as client:
        response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers[INSTANCE_HEADER] == "t/i"
    body = response.json()
    assert body["type"].endswith("not-found")
    assert body["instance"] == "/no/such/thing"
    assert "/no/such/thing" in body["detail"]


async def test_wrong_method_is_a_method_not_allowed_problem(app: Starlette, serve: Any) -> None:
    async with serve(app) as client:
        response = await client.delete("/ok")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("method-not-allowed")


async def test_method_not_allowed_lists_the_allowed_methods(app: Starlette, serve: Any) -> None:
    async with serve(app) as client:
        response = await client.delete("/ok")
    assert "GET" in response.headers.get("allow", "")


async def test_other_http_exceptions_keep_status_detail_and_headers(
    app: Starlette, serve: Any
) -> None:
    async with serve(app) as client:
        response = await client.get("/teapot")
    assert response.status_code == 418
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-brew"] == "earl-grey"
    body = response.json()
    assert body["type"].endswith("/http-418")
    assert body["detail"] == "short and stout"


@pytest.mark.parametrize("path", ["/ok", "/health/live", "/health/ready", "/metrics", "/nope"])
async def test_every_response_names_the_instance(app: Starlette, serve: Any, path: str) -> None:
    async with serve(app) as client:
        response = await client.get(path)
    assert response.headers[INSTANCE_HEADER] == "t/i"


async def test_lifespan_runs_and_state_is_exposed(app: Starlette, serve: Any) -> None:
    async with serve(app) as client:
        response = await client.get("/ok")
    assert response.json() == {"opened": True}
    assert app.state.opened is False
    assert isinstance(app.state.settings, ServiceSettings)
    assert isinstance(app.state.health, Health)


async def test_two_apps_in_one_process_have_separate_metrics(build_app: Any, serve: Any) -> None:
    first = build_app(ROUTES, lifespan=lifespan, service_name="one")
    second = build_app(ROUTES, lifespan=lifespan, service_name="two")
    assert first.state.metrics_registry is not second.state.metrics_registry
    async with serve(first) as one, serve(second) as two:
        await one.get("/ok")
        first_metrics = (await one.get("/metrics")).text
        second_metrics = (await two.get("/metrics")).text
    assert 'service="one"' in first_metrics
    assert 'route="/ok"' in first_metrics
    assert 'route="/ok"' not in second_metrics


def websocket_scope(path: str, *, denial: bool) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "server": ("t", 80),
        "client": ("127.0.0.1", 5000),
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial else {},
    }


async def run_websocket(app: Starlette, path: str, *, denial: bool) -> list[dict[str, Any]]:
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(websocket_scope(path, denial=denial), receive, send)
    return sent


async def test_websocket_error_before_accept_closes_with_4xxx(app: Starlette) -> None:
    sent = await run_websocket(app, "/ws/reject", denial=False)
    assert sent == [{"type": "websocket.close", "code": 4401, "reason": "send a token"}]


async def test_websocket_error_before_accept_uses_denial_response(app: Starlette) -> None:
    sent = await run_websocket(app, "/ws/reject", denial=True)
    start = sent[0]
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 401
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"www-authenticate"].startswith(b"Bearer")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "websocket.http.response.body")
    assert b"send a token" in body


async def test_websocket_error_after_accept_closes_with_4xxx(app: Starlette) -> None:
    sent = await run_websocket(app, "/ws/after", denial=True)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert (sent[1]["code"], sent[1]["reason"]) == (4403, "drivers only")


@pytest.mark.parametrize(
    ("status", "code"), [(400, 4400), (401, 4401), (403, 4403), (404, 4404), (503, 4503)]
)
def test_websocket_close_code_examples(status: int, code: int) -> None:
    assert websocket_close_code(status) == code


@given(status=st.integers())
def test_websocket_close_code_is_always_an_application_code(status: int) -> None:
    assert 4000 <= websocket_close_code(status) <= 4999


@given(status=st.integers(min_value=100, max_value=599))
def test_websocket_close_code_keeps_the_http_status(status: int) -> None:
    assert websocket_close_code(status) - 4000 == status
