"""The operators' status page: ``/ops``, its scripts and its stylesheet, served as they are.

The files hold no data and nothing secret, so they are served without a token; the script reads
the admin JSON endpoints of the same origin with the admin token the operator gives it (in the
URL fragment, which never reaches a server, or in a form).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import PurePosixPath
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Only this origin's files and JSON: no inline script or style, no other site, no framing, and a
# form that could only ever post the token somewhere if the script failed posts nowhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        # The browser revalidates every time (a 304 when unchanged): a new release shows at once.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
)

MEDIA_TYPES: Mapping[str, str] = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
    }
)

# path → file in the package's static folder: the page, then what it loads (the script's
# modules import one another by relative paths, so they sit side by side under /ops/).
ASSETS: Mapping[str, str] = MappingProxyType(
    {
        "/ops": "ops.html",
        **{
            f"/ops/{name}": name
            for name in ("ops.css", "ops.js", "panels.js", "charts.js", "dom.js", "format.js")
        },
    }
)


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, media type and a strong ETag derived from the bytes."""

    body: bytes
    media_type: str
    etag: str

    @classmethod
    def load(cls, name: str) -> Asset:
        """The file ``name`` of the package's static folder; its type follows its suffix."""
        body = (files("tripline.monitor") / "static" / name).read_bytes()
        media_type = MEDIA_TYPES[PurePosixPath(name).suffix]
        return cls(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value names ``etag`` (weak comparison, as RFC 9110
    asks for ``If-None-Match``) or is ``*``."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def asset_endpoint(asset: Asset) -> Callable[[Request], Response]:
    """An endpoint answering ``asset`` with :data:`PAGE_HEADERS` and its ETag, or ``304 Not
    Modified`` (no body) when the request already holds this version."""
    headers = {**PAGE_HEADERS, "ETag": asset.etag}

    def endpoint(request: Request) -> Response:
        if matches(request.headers.get("if-none-match", ""), asset.etag):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    return endpoint


def ops_routes() -> list[Route]:
    """``GET``/``HEAD`` routes for the page and its assets, each file read once, now."""
    return [
        Route(path, asset_endpoint(Asset.load(name)), methods=["GET"])
        for path, name in ASSETS.items()
    ]
