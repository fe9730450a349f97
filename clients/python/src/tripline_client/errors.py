"""The SDK's error tree: every failure of a call is one of these, never an httpx, websockets or
sqlite3 exception.

The gateway answers errors as RFC 9457 ``application/problem+json`` with a stable ``type``
(``https://tripline.dev/problems/<slug>``); :func:`from_problem` maps the slug to a class. Each
error carries two texts: ``detail``, what the server said (for logs and developers), and
``user_message``, a short sentence fit to show a person.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_BASE = "https://tripline.dev/problems/"


class TriplineError(Exception):
    """Base of every error the SDK raises.

    ``transient`` says whether the same request may succeed later unchanged (the SDK retries
    those, and the offline queue keeps an action while its error is transient); ``retry_after``
    is the server's ``Retry-After`` in seconds, when it sent one.
    """

    slug: ClassVar[str] = "internal-error"
    transient: ClassVar[bool] = False
    default_message: ClassVar[str] = "Something went wrong on our side. Please try again."

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        problem: Mapping[str, Any] | None = None,
        user_message: str | None = None,
    ) -> None:
        self.detail = detail or self.default_message
        self.status = status
        self.retry_after = retry_after
        self.problem: dict[str, Any] = dict(problem or {})
        self.user_message = user_message or self.default_message
        super().__init__(self.detail)

    @property
    def trace_id(self) -> str | None:
        """The server's trace id for this failure, to quote to support, when it gave one."""
        value = self.problem.get("trace_id")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, detail={self.detail!r})"


class NetworkError(TriplineError):
    """The gateway could not be reached, or the connection broke before an answer."""

    slug = "network-error"
    transient = True
    default_message = "No connection. Check your network and try again."


class RequestTimeout(NetworkError):
    """No answer arrived within the call's timeout."""

    slug = "request-timeout"
    default_message = "The connection is too slow right now. Please try again."


class ServiceUnavailable(TriplineError):
    """The platform refused for now (503: overloaded, a dependency or upstream away)."""

    slug = "service-unavailable"
    transient = True
    default_message = "The service is busy right now. We will try again shortly."


class Overloaded(ServiceUnavailable):
    slug = "overloaded"


class CircuitOpen(ServiceUnavailable):
    slug = "circuit-open"


class DependencyUnavailable(ServiceUnavailable):
    slug = "dependency-unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    """502: the gateway could not reach the service behind it."""

    slug = "upstream-unavailable"


class UpstreamTimeout(ServiceUnavailable):
    """504: the service behind the gateway did not answer in time."""

    slug = "upstream-timeout"
    default_message = "The service is slow right now. We will try again shortly."


class RateLimited(TriplineError):
    slug = "rate-limited"
    transient = True
    default_message = "Too many requests. Please wait a moment."


class RetryBudgetExhausted(TriplineError):
    """The SDK did not send a retry because too many recent calls failed (its retry budget);
    ``__cause__`` is the last real failure, whose ``user_message`` it carries."""

    slug = "retry-budget-exhausted"
    transient = True
    default_message = "The service is having trouble. We will try again shortly."


class InternalError(TriplineError):
    """A 500: the platform failed; ``trace_id`` identifies it for support."""

    slug = "internal-error"
    transient = True


class InvalidRequest(TriplineError):
    """The request was refused as it is (a 4xx other than the ones below): sending it again
    unchanged will fail again."""

    slug = "invalid-request"
    default_message = "That request could not be completed."


class ValidationError(InvalidRequest):
    slug = "validation-error"
    default_message = "Some of the details are not valid. Please check them and try again."

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The server's per-field errors (``loc``, ``msg``), when it listed them."""
        value = self.problem.get("errors")
        return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class MalformedRequest(InvalidRequest):
    slug = "malformed-request"


class PayloadTooLarge(InvalidRequest):
    slug = "payload-too-large"
    default_message = "That is too large to send."


class UnsupportedMediaType(InvalidRequest):
    slug = "unsupported-media-type"
    default_message = "That kind of file or data is not supported."


class MethodNotAllowed(InvalidRequest):
    slug = "method-not-allowed"


class Unauthorized(TriplineError):
    """401: the token is missing, invalid or expired; sign in again."""

    slug = "unauthorized"
    default_message = "Your session has expired. Please sign in again."


class Forbidden(TriplineError):
    slug = "forbidden"
    default_message = "You are not allowed to do that."


class NotFound(TriplineError):
    slug = "not-found"
    default_message = "We could not find that. It may have been removed."


class Conflict(TriplineError):
    slug = "conflict"
    default_message = "That is no longer possible: it was changed in the meantime."


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"


class PaymentDeclined(TriplineError):
    slug = "payment-declined"
    default_message = "Your payment was declined. Please try another payment method."


class ProviderUnavailable(ServiceUnavailable):
    slug = "provider-unavailable"
    default_message = "The payment provider is not answering. We will try again shortly."


class UnexpectedResponse(TriplineError):
    """Something answered that is not the platform, or not as the platform answers: a redirect,
    a page that is not JSON (a hotel or airport Wi-Fi's sign-in page), a body of the wrong shape.
    Transient: the same request usually works once the network is really online."""

    slug = "unexpected-response"
    transient = True
    default_message = "This network is not letting us through. Sign in to the Wi-Fi or try again."


class ActionExpired(TriplineError):
    """A queued action could not be delivered within its time (a day), and was given up."""

    slug = "action-expired"
    default_message = "This could not be sent in time and was not delivered."


class ClientClosed(TriplineError):
    """The client was closed while this waited; a queued action stays on disk and is sent by the
    next client started on the same directory."""

    slug = "client-closed"
    transient = True
    default_message = "The app stopped before this finished. It will be sent when it restarts."


CATALOGUE: dict[str, type[TriplineError]] = {
    cls.slug: cls
    for cls in (
        ValidationError,
        MalformedRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        IdempotencyKeyReused,
        PayloadTooLarge,
        UnsupportedMediaType,
        RateLimited,
        PaymentDeclined,
        UpstreamUnavailable,
        DependencyUnavailable,
        Overloaded,
        CircuitOpen,
        ProviderUnavailable,
        UpstreamTimeout,
        InternalError,
    )
}
"""Every problem ``type`` slug the platform documents, and the error class it becomes."""

_BY_STATUS: dict[int, type[TriplineError]] = {
    400: MalformedRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
    502: UpstreamUnavailable,
    503: ServiceUnavailable,
    504: UpstreamTimeout,
}


def error_class(slug: str | None, status: int) -> type[TriplineError]:
    """The class for a problem ``type`` slug, else the one for the HTTP ``status``."""
    if slug is not None and slug in CATALOGUE:
        return CATALOGUE[slug]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return InternalError
    return InvalidRequest


def from_problem(status: int, body: bytes, *, retry_after: float | None = None) -> TriplineError:
    """Turn an error answer into its SDK error. Never raises: a body that is not a problem
    document still gives the error for its status."""
    problem = _problem(body)
    type_uri = problem.get("type")
    slug = (
        type_uri.removeprefix(PROBLEM_BASE)
        if isinstance(type_uri, str) and type_uri.startswith(PROBLEM_BASE)
        else None
    )
    detail = problem.get("detail") or problem.get("title")
    cls = error_class(slug, status)
    return cls(
        detail if isinstance(detail, str) else f"HTTP {status}",
        status=status,
        retry_after=retry_after,
        problem=problem,
    )


def _problem(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
