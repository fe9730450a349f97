"""The sandbox app: both providers, the control API, and the common service shape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from tripline.common.app import service_app
from tripline.common.health import Health
from tripline.sandbox.routes import routes
from tripline.sandbox.settings import SandboxSettings
from tripline.sandbox.state import SandboxState


async def release_when_draining(health: Health, state: SandboxState) -> None:
    """Close ``state`` once ``health`` reports draining.

    uvicorn waits for in-flight requests before it runs the lifespan's exit, so without this a
    request held in hang mode would delay every shutdown by the full graceful timeout.
    """
    await health.wait_draining()
    state.close()


# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ()


def create_app(settings: SandboxSettings) -> Starlette:
    """Build the sandbox app; its state lives on ``app.state.sandbox`` while the app runs.

    Readiness has no probes: the sandbox depends on nothing, so it is ready once it is up.
    """
    health = Health(timeout_s=settings.health_check_timeout_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = SandboxState.from_settings(settings)
        app.state.sandbox = state
        watcher = asyncio.create_task(release_when_draining(health, state))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            state.close()

    return service_app(settings, routes=routes(), lifespan=lifespan, health=health)
