"""The project's error tree and its RFC 9457 ``application/problem+json`` rendering.

Code raises a :class:`TriplineError` subclass; the exception handlers installed by
:func:`tripline.common.app.service_app` turn it into a problem response. Third-party errors are
translated into this tree where they are caught, so no handler ever needs to know about redis,
pymongo or httpx exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from starlette.responses import Response

PROBLEM_BASE = "https://tripline.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class TriplineError(Exception):
    """Base of every error the project raises on purpose."""

    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug


class ValidationFailed(TriplineError):
    slug = "validation-error"
    title = "Request is not valid"
    status = 422

    def __init__(self, detail: str, *, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(detail, extra={"errors": list(errors)} if errors else None)


class MalformedRequest(TriplineError):
    slug = "malformed-request"
    title = "Request body could not be read"
    status = 400


class Unauthorized(TriplineError):
    slug = "unauthorized"
    title = "Authentication required"
    status = 401

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="tripline"'})


class Forbidden(TriplineError):
    slug = "forbidden"
    title = "Not allowed"
    status = 403


class NotFound(TriplineError):
    slug = "not-found"
    title = "Not found"
    status = 404


class MethodNotAllowed(TriplineError):
    slug = "method-not-allowed"
    title = "Method not allowed"
    status = 405


class Conflict(TriplineError):
    slug = "conflict"
    title = "Conflict with the current state"
    status = 409


class PayloadTooLarge(TriplineError):
    slug = "payload-too-large"
    title = "Request body too large"
    status = 413


class UnsupportedMediaType(TriplineError):
    slug = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class DependencyUnavailable(TriplineError):
    """A dependency this service needs (Redis, MongoDB, S3, the broker) is not answering."""

    slug = "dependency-unavailable"
    title = "A dependency is unavailable"
    status = 503

    def __init__(self, dependency: str, detail: str | None = None, retry_after: int = 5) -> None:
        super().__init__(
            detail or f"{dependency} is not answering; try again shortly",
            headers={"Retry-After": str(retry_after)},
            extra={"dependency": dependency},
        )
        self.dependency = dependency


class UpstreamUnavailable(TriplineError):
    """The gateway could not reach any replica of the upstream service."""

    slug = "upstream-unavailable"
    title = "Upstream service unavailable"
    status = 502


class UpstreamTimeout(TriplineError):
    slug = "upstream-timeout"
    title = "Upstream service timed out"
    status = 504


RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


def problem_body(
    *,
    slug: str,
    title: str,
    status: int,
    detail: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    **members: Any,
) -> dict[str, Any]:
    """Build an RFC 9457 problem object; ``type`` is stable per ``slug``.

    Extension members never override the standard ones.
    """
    body: dict[str, Any] = {
        key: value
        for key, value in {**(extra or {}), **members}.items()
        if key not in RESERVED_MEMBERS
    }
    body.update(type=PROBLEM_BASE + slug, title=title, status=status, detail=detail)
    if instance is not None:
        body["instance"] = instance
    return body


class ProblemResponse(Response):
    media_type = PROBLEM_CONTENT_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def problem_response(error: TriplineError, *, instance: str | None = None) -> ProblemResponse:
    """Render ``error`` as a problem+json response with its headers."""
    body = problem_body(
        slug=error.slug,
        title=error.title,
        status=error.status,
        detail=error.detail,
        instance=instance,
        extra=error.extra,
    )
    return ProblemResponse(body, status_code=error.status, headers=error.headers)
