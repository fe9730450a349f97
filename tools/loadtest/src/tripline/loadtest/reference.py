"""The reference a run's figures are divided by: the cheapest useful HTTP service on the same
server stack as Tripline's services (Starlette under uvicorn with uvloop and httptools, one
process), answering a small JSON body, measured by the same k6 in the same run. The machine is
shared and noisy; a figure divided by the reference measured minutes apart on the same machine
moves far less than the figure itself.

``python -m tripline.loadtest.reference PORT`` serves it."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(_request: Request) -> JSONResponse:
    return JSONResponse({"id": "reference", "status": "ok"})


def create_app() -> Starlette:
    """The reference service: ``GET /`` answers a small JSON document."""
    return Starlette(routes=[Route("/", hello)])


def main() -> None:
    port = int(sys.argv[1])
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
