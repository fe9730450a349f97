from __future__ import annotations

import json

import pytest

from tripline.common.errors import (
    PROBLEM_BASE,
    PROBLEM_CONTENT_TYPE,
    CircuitOpen,
    Conflict,
    DependencyUnavailable,
    Forbidden,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TriplineError,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
    problem_body,
    problem_response,
)

SIMPLE_ERRORS: list[tuple[type[TriplineError], int, str]] = [
    (TriplineError, 500, "internal-error"),
    (MalformedRequest, 400, "malformed-request"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (MethodNotAllowed, 405, "method-not-allowed"),
    (Conflict, 409, "conflict"),
    (PayloadTooLarge, 413, "payload-too-large"),
    (UnsupportedMediaType, 415, "unsupported-media-type"),
    (UpstreamUnavailable, 502, "upstream-unavailable"),
    (UpstreamTimeout, 504, "upstream-timeout"),
]


def body_of(error: TriplineError, **kwargs: str) -> dict[str, object]:
    response = problem_response(error, **kwargs)
    decoded: dict[str, object] = json.loads(response.body)
    return decoded


@pytest.mark.parametrize(("cls", "status", "slug"), SIMPLE_ERRORS)
def test_problem_response_renders_rfc9457_fields(
    cls: type[TriplineError], status: int, slug: str
) -> None:
    response = problem_response(cls("something specific"))
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = json.loads(response.body)
    assert body == {
        "type": PROBLEM_BASE + slug,
        "title": cls.title,
        "status": status,
        "detail": "something specific",
    }


@pytest.mark.parametrize(("cls", "_status", "_slug"), SIMPLE_ERRORS)
def test_detail_defaults_to_title(cls: type[TriplineError], _status: int, _slug: str) -> None:
    error = cls()
    assert error.detail == cls.title
    assert str(error) == cls.title
    assert body_of(error)["detail"] == cls.title


def test_errors_form_one_tree() -> None:
    for cls, _, _ in SIMPLE_ERRORS:
        assert issubclass(cls, TriplineError)
    assert issubclass(ValidationFailed, TriplineError)
    assert issubclass(DependencyUnavailable, TriplineError)
    assert issubclass(CircuitOpen, TriplineError)


def test_type_uri_is_stable_per_slug() -> None:
    assert Conflict("a").type_uri == Conflict("b").type_uri == PROBLEM_BASE + "conflict"


def test_instance_is_included_only_when_given() -> None:
    assert "instance" not in body_of(NotFound("x"))
    assert body_of(NotFound("x"), instance="/trips/1")["instance"] == "/trips/1"


def test_unauthorized_carries_www_authenticate() -> None:
    response = problem_response(Unauthorized("no token"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert 'realm="tripline"' in response.headers["www-authenticate"]


def test_dependency_unavailable_carries_retry_after_and_dependency() -> None:
    error = DependencyUnavailable("redis", retry_after=7)
    response = problem_response(error)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    body = json.loads(response.body)
    assert body["dependency"] == "redis"
    assert "redis" in body["detail"]
    assert error.dependency == "redis"


def test_dependency_unavailable_default_retry_and_custom_detail() -> None:
    response = problem_response(DependencyUnavailable("mongo", "primary is electing"))
    assert response.headers["retry-after"] == "5"
    assert json.loads(response.body)["detail"] == "primary is electing"


@pytest.mark.parametrize(
    ("retry_after_s", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (29.01, "30"), (30.0, "30")]
)
def test_circuit_open_rounds_retry_after_up_to_whole_seconds(
    retry_after_s: float, header: str
) -> None:
    error = CircuitOpen("payments", retry_after_s)
    response = problem_response(error)
    assert response.status_code == 503
    assert response.headers["retry-after"] == header
    body = body_of(error)
    assert body["type"] == PROBLEM_BASE + "circuit-open"
    assert body["title"] == "Service temporarily unavailable"
    assert body["dependency"] == "payments"
    assert body["detail"] == f"payments is failing; requests are paused for {header} s"
    assert error.dependency == "payments"
    assert error.retry_after_s == retry_after_s


def test_extra_fields_are_merged_into_the_body() -> None:
    body = body_of(Conflict("taken", extra={"trip_id": "t-1", "version": 3}))
    assert body["trip_id"] == "t-1"
    assert body["version"] == 3
    assert body["status"] == 409


def test_custom_headers_are_sent() -> None:
    response = problem_response(Conflict("x", headers={"ETag": '"v3"'}))
    assert response.headers["etag"] == '"v3"'


def test_errors_do_not_share_mutable_state() -> None:
    first = Conflict("a", headers={"X-A": "1"}, extra={"a": 1})
    second = Conflict("b")
    assert second.headers == {}
    assert second.extra == {}
    assert first.headers == {"X-A": "1"}


def test_validation_failed_lists_errors_only_when_present() -> None:
    errors = [{"loc": "name", "msg": "Field required", "type": "missing"}]
    assert body_of(ValidationFailed("bad", errors=errors))["errors"] == errors
    assert "errors" not in body_of(ValidationFailed("bad"))
    assert ValidationFailed("bad").status == 422


def test_body_is_utf8_json_without_ascii_escapes() -> None:
    response = problem_response(NotFound("trajet « Genève » introuvable"))
    assert "Genève".encode() in response.body
    assert json.loads(response.body)["detail"] == "trajet « Genève » introuvable"


def test_problem_body_builds_the_object() -> None:
    assert problem_body(slug="s", title="T", status=418, detail="d", instance="/i", x=1) == {
        "type": PROBLEM_BASE + "s",
        "title": "T",
        "status": 418,
        "detail": "d",
        "instance": "/i",
        "x": 1,
    }


def test_extra_with_a_reserved_name_still_renders() -> None:
    response = problem_response(Conflict("x", extra={"title": "shadow"}))
    assert response.status_code == 409
    assert json.loads(response.body)["title"] == Conflict.title
