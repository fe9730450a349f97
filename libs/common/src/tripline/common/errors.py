"""The project's error tree and its RFC 9457 ``application/problem+json`` rendering.

Code raises a :class:`TriplineError` subclass; the exception handlers installed by
:func:`tripline.common.app.service_app` turn it into a problem response. Third-party errors are
translated into this tree where they are caught, so no handler ever needs to know about redis,
pymongo or httpx exceptions.
"""

from __future__ import annotations

import json
import math
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


class CircuitOpen(TriplineError):
    """A circuit breaker refused the call: the dependency behind it has been failing."""

    slug = "circuit-open"
    title = "Service temporarily unavailable"
    status = 503

    def __init__(self, name: str, retry_after_s: float) -> None:
        # Retry-After takes whole seconds, and zero would invite an immediate retry storm.
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(
            f"{name} is failing; requests are paused for {seconds} s",
            headers={"Retry-After": str(seconds)},
            extra={"dependency": name},
        )
        self.dependency = name
        self.retry_after_s = retry_after_s


class RateLimited(TriplineError):
    """The caller used up its quota; ``headers`` carry ``Retry-After`` and ``RateLimit``."""

    slug = "rate-limited"
    title = "Too many requests"
    status = 429

    def __init__(self, detail: str, *, headers: Sequence[tuple[bytes, bytes]]) -> None:
        super().__init__(detail, headers={name.decode(): value.decode() for name, value in headers})


class Overloaded(TriplineError):
    """This replica is shedding load: lower-priority work is refused until it recovers."""

    slug = "overloaded"
    title = "Service overloaded"
    status = 503

    def __init__(self, retry_after_s: int) -> None:
        seconds = max(1, retry_after_s)
        super().__init__(
            f"the service is overloaded; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


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
