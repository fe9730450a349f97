import json

import pytest

from tripline_client import errors
from tripline_client.errors import PROBLEM_BASE, from_problem

# Every problem type the platform documents (README "Errors", the sandbox's and core's own).
DOCUMENTED = {
    "validation-error": (422, errors.ValidationError, False),
    "malformed-request": (400, errors.MalformedRequest, False),
    "unauthorized": (401, errors.Unauthorized, False),
    "forbidden": (403, errors.Forbidden, False),
    "not-found": (404, errors.NotFound, False),
    "method-not-allowed": (405, errors.MethodNotAllowed, False),
    "conflict": (409, errors.Conflict, False),
    "idempotency-key-reused": (409, errors.IdempotencyKeyReused, False),
    "payload-too-large": (413, errors.PayloadTooLarge, False),
    "unsupported-media-type": (415, errors.UnsupportedMediaType, False),
    "rate-limited": (429, errors.RateLimited, True),
    "payment-declined": (402, errors.PaymentDeclined, False),
    "upstream-unavailable": (502, errors.UpstreamUnavailable, True),
    "dependency-unavailable": (503, errors.DependencyUnavailable, True),
    "overloaded": (503, errors.Overloaded, True),
    "circuit-open": (503, errors.CircuitOpen, True),
    "provider-unavailable": (503, errors.ProviderUnavailable, True),
    "upstream-timeout": (504, errors.UpstreamTimeout, True),
    "internal-error": (500, errors.InternalError, True),
}


def problem(slug: str, status: int, **extra: object) -> bytes:
    body = {"type": PROBLEM_BASE + slug, "title": slug, "status": status, **extra}
    return json.dumps(body).encode()


@pytest.mark.parametrize("slug", sorted(DOCUMENTED))
def test_each_documented_problem_becomes_its_own_error(slug: str) -> None:
    status, cls, transient = DOCUMENTED[slug]
    error = from_problem(status, problem(slug, status, detail="what the server said"))
    assert type(error) is cls
    assert error.status == status
    assert error.detail == "what the server said"
    assert error.transient is transient
    assert error.user_message
    assert "http" not in error.user_message.lower()


def test_the_catalogue_is_exactly_the_documented_set() -> None:
    assert set(errors.CATALOGUE) == set(DOCUMENTED)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, errors.NotFound),
        (418, errors.InvalidRequest),
        (503, errors.ServiceUnavailable),
        (500, errors.InternalError),
        (599, errors.InternalError),
    ],
)
def test_an_unknown_or_missing_type_falls_back_to_the_status(
    status: int, cls: type[errors.TriplineError]
) -> None:
    for body in (b"", b"<html>bad gateway</html>", b"[1, 2]", problem("brand-new", status)):
        assert type(from_problem(status, body)) is cls


def test_validation_errors_list_the_fields_and_carry_the_trace_id() -> None:
    body = problem(
        "validation-error",
        422,
        errors=[{"loc": "body.lat", "msg": "too large"}, "junk"],
        trace_id="abc123",
    )
    error = from_problem(422, body, retry_after=None)
    assert isinstance(error, errors.ValidationError)
    assert error.errors == [{"loc": "body.lat", "msg": "too large"}]
    assert error.trace_id == "abc123"


def test_retry_after_is_kept() -> None:
    error = from_problem(429, problem("rate-limited", 429), retry_after=12)
    assert error.retry_after == 12
