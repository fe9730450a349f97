"""Fixtures shared by the tripline.common unit tests: in-process apps, no sockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from tripline.common.app import service_app
from tripline.common.health import Health
from tripline.common.settings import ServiceSettings

ServeApp = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]
BuildApp = Callable[..., Starlette]


@contextlib.asynccontextmanager
async def _noop_lifespan(_app: Starlette) -> AsyncIterator[None]:
    yield


@pytest.fixture
def build_app() -> BuildApp:
    """Build a ``service_app`` named ``t`` on instance ``i`` around ``routes``."""

    def build(
        routes: Sequence[BaseRoute] = (),
        *,
        health: Health | None = None,
        service_name: str = "t",
        lifespan: Any = _noop_lifespan,
    ) -> Starlette:
        settings = ServiceSettings(service_name=service_name, instance_id="i")
        return service_app(
            settings, routes=list(routes), lifespan=lifespan, health=health or Health()
        )

    return build


@pytest.fixture
def serve() -> ServeApp:
    """Run ``app``'s lifespan and yield an httpx client talking to it over ASGI."""

    @contextlib.asynccontextmanager
    async def run(
        app: Starlette, *, raise_app_exceptions: bool = True
    ) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            yield client

    return run
