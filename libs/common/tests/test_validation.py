from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.errors import (
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from tripline.common.validation import parse_body, parse_query, read_json, validate


class Point(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Trip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rider_id: str = Field(min_length=1)
    seats: int = Field(ge=1, le=8)
    pickup: Point
    tags: list[str] = Field(default_factory=list)


class Search(BaseModel):
    city: str
    limit: int = 10


class Tagged(BaseModel):
    tag: list[str]


class Feed:
    """An ASGI ``receive`` that hands out ``chunks`` and counts how many were read."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    async def __call__(self) -> dict[str, Any]:
        self.reads += 1
        if not self.chunks:
            return {"type": "http.disconnect"}
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}


def request(
    chunks: Sequence[bytes] = (b"",),
    *,
    content_type: str | None = "application/json",
    content_length: str | None = None,
) -> tuple[Request, Feed]:
    headers: list[tuple[bytes, bytes]] = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if content_length is not None:
        headers.append((b"content-length", content_length.encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    feed = Feed(chunks)
    return Request(scope, feed), feed


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/merge-patch+json",
        None,
    ],
)
async def test_read_json_accepts_json_content_types(content_type: str | None) -> None:
    req, _ = request([b'{"a": [1, 2]}'], content_type=content_type)
    assert await read_json(req) == {"a": [1, 2]}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"]
)
async def test_read_json_rejects_other_content_types(content_type: str) -> None:
    req, _ = request([b"{}"], content_type=content_type)
    with pytest.raises(UnsupportedMediaType) as caught:
        await read_json(req)
    assert caught.value.status == 415


async def test_declared_oversize_is_rejected_without_reading_the_body() -> None:
    req, feed = request([b"x" * 100], content_length="100")
    with pytest.raises(PayloadTooLarge) as caught:
        await read_json(req, max_bytes=10)
    assert caught.value.status == 413
    assert feed.reads == 0


async def test_streamed_oversize_is_rejected_and_reading_stops() -> None:
    req, feed = request([b"[1,"] * 1000 + [b"1]"])
    with pytest.raises(PayloadTooLarge):
        await read_json(req, max_bytes=10)
    assert feed.reads < 10


async def test_understated_content_length_does_not_bypass_the_limit() -> None:
    req, _ = request([b'"' + b"a" * 50 + b'"'], content_length="3")
    with pytest.raises(PayloadTooLarge):
        await read_json(req, max_bytes=10)


async def test_body_exactly_at_the_limit_is_read() -> None:
    body = b'"' + b"a" * 8 + b'"'
    req, _ = request([body[:4], body[4:]], content_length=str(len(body)))
    assert await read_json(req, max_bytes=len(body)) == "a" * 8


@pytest.mark.parametrize("chunks", [[b""], [b"", b""]])
async def test_empty_body_is_malformed(chunks: list[bytes]) -> None:
    req, _ = request(chunks)
    with pytest.raises(MalformedRequest, match="needs a JSON body") as caught:
        await read_json(req)
    assert caught.value.status == 400


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"nope", b"\xff\xfe\xfa", b"[1,]"])
async def test_invalid_json_is_malformed(body: bytes) -> None:
    req, _ = request([body])
    with pytest.raises(MalformedRequest, match="not valid JSON"):
        await read_json(req)


async def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    req, _ = request([b"[" * 5000 + b"]" * 5000])
    with pytest.raises(MalformedRequest):
        await read_json(req)


def test_validate_returns_the_model() -> None:
    data = {"rider_id": "r1", "seats": 2, "pickup": {"lat": 1, "lon": 2}}
    trip = validate(Trip, data)
    assert trip == Trip(rider_id="r1", seats=2, pickup=Point(lat=1, lon=2))


def test_validate_lists_every_error_with_loc_msg_type() -> None:
    data = {"rider_id": "", "seats": 0, "pickup": {"lat": 91}, "extra": 1}
    with pytest.raises(ValidationFailed) as caught:
        validate(Trip, data)
    error = caught.value
    assert error.status == 422
    errors = error.extra["errors"]
    assert error.detail == f"the body has {len(errors)} invalid field(s)"
    locs = {item["loc"] for item in errors}
    assert locs == {"rider_id", "seats", "pickup.lat", "pickup.lon", "extra"}
    for item in errors:
        assert set(item) == {"loc", "msg", "type"}
    assert {item["type"] for item in errors} >= {"missing", "extra_forbidden"}


def test_validate_reports_a_non_object_at_body() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate(Trip, [1, 2])
    assert [item["loc"] for item in caught.value.extra["errors"]] == ["body"]


def test_validate_never_echoes_the_input() -> None:
    secret = "s3cr3t-card-4111111111111111"
    data = {"rider_id": [secret], "seats": secret, "pickup": {"lat": secret, "lon": secret}}
    with pytest.raises(ValidationFailed) as caught:
        validate(Trip, data)
    rendered = json.dumps(caught.value.extra) + caught.value.detail
    assert secret not in rendered
    assert "4111" not in rendered


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
trip_like = st.fixed_dictionaries(
    {},
    optional={
        "rider_id": json_values,
        "seats": json_values,
        "tags": json_values,
        "pickup": st.fixed_dictionaries({}, optional={"lat": json_values, "lon": json_values}),
    },
)


def outcome(data: object) -> Trip | ValidationFailed:
    try:
        return validate(Trip, data, what="payload")
    except ValidationFailed as exc:
        return exc


@given(data=json_values | trip_like)
def test_validate_raises_only_validation_failed(data: object) -> None:
    result = outcome(data)
    if isinstance(result, Trip):
        return
    assert result.detail.startswith("the payload has ")
    errors = result.extra["errors"]
    assert errors
    for item in errors:
        assert set(item) == {"loc", "msg", "type"}
        assert all(isinstance(value, str) for value in item.values())


def test_parse_query_validates_and_names_the_query() -> None:
    assert parse_query(QueryParams("city=Lyon&limit=3"), Search) == Search(city="Lyon", limit=3)
    with pytest.raises(ValidationFailed, match="the query has 2 invalid") as caught:
        parse_query(QueryParams("limit=lots"), Search)
    assert {item["loc"] for item in caught.value.extra["errors"]} == {"city", "limit"}


def test_parse_query_collects_multi_valued_keys() -> None:
    parsed = parse_query(QueryParams("tag=a&tag=b"), Tagged, multi=["tag"])
    assert parsed.tag == ["a", "b"]


async def create_trip(req: Request) -> Response:
    trip = await parse_body(req, Trip, max_bytes=1024)
    return JSONResponse(trip.model_dump(), status_code=201)


async def test_parse_body_through_an_app(build_app: Any, serve: Any) -> None:
    app = build_app([Route("/trips", create_trip, methods=["POST"])])
    good = {"rider_id": "r", "seats": 1, "pickup": {"lat": 0, "lon": 0}}
    async with serve(app) as client:
        created = await client.post("/trips", json=good)
        invalid = await client.post("/trips", json={**good, "seats": "TOPSECRET"})
        too_big = await client.post("/trips", json={**good, "rider_id": "x" * 2000})
        wrong_type = await client.post("/trips", content=b"a=1", headers={"content-type": "x/y"})
    assert created.status_code == 201
    assert created.json()["tags"] == []
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    body = invalid.json()
    assert body["type"].endswith("/validation-error")
    [error] = body["errors"]
    assert (error["loc"], error["type"]) == ("seats", "int_parsing")
    assert "TOPSECRET" not in invalid.text
    assert too_big.status_code == 413
    assert wrong_type.status_code == 415


async def test_an_integer_past_pythons_digit_limit_is_malformed(build_app: Any, serve: Any) -> None:
    async def echo(request: Request) -> Response:
        return JSONResponse({"got": str(type(await read_json(request)))})

    app = build_app([Route("/echo", echo, methods=["POST"])])
    async with serve(app) as client:
        answer = await client.post(
            "/echo",
            content=b'{"amount_cents": ' + b"1" * 5000 + b"}",
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 400
    assert answer.json()["type"].endswith("/malformed-request")
