"""Reading and validating request input into pydantic models, with problem+json errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request

from tripline.common.errors import (
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)

Model = TypeVar("Model", bound=BaseModel)

DEFAULT_MAX_BODY_BYTES = 64 * 1024


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """The client-facing part of pydantic's errors: where, what, and why (never the input)."""
    return [
        {
            "loc": ".".join(str(part) for part in error["loc"]) or "body",
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


def validate(model: type[Model], data: object, *, what: str = "body") -> Model:
    """Validate ``data`` into ``model``; raises :class:`ValidationFailed` listing every error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise ValidationFailed(
            f"the {what} has {len(errors)} invalid field(s)", errors=errors
        ) from exc


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """Read the whole body, refusing it as soon as it is known to exceed ``max_bytes``.

    Raises :class:`PayloadTooLarge` on a declared or actual size over the limit.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body may be at most {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the body may be at most {max_bytes} bytes")
    return bytes(body)


async def read_json(request: Request, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> object:
    """Read a JSON body of at most ``max_bytes``.

    Raises :class:`UnsupportedMediaType`, :class:`PayloadTooLarge` or :class:`MalformedRequest`.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in {"application/json", ""} and not content_type.endswith("+json"):
        raise UnsupportedMediaType("send the body as application/json")
    body = await read_body(request, max_bytes=max_bytes)
    if not body:
        raise MalformedRequest("the request needs a JSON body")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, bad UTF-8 and integers past Python's digit limit.
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from exc


async def parse_body(
    request: Request, model: type[Model], *, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Model:
    """Read and validate a JSON body into ``model``."""
    return validate(model, await read_json(request, max_bytes=max_bytes))


def parse_query(params: QueryParams, model: type[Model], *, multi: Sequence[str] = ()) -> Model:
    """Validate query parameters into ``model``; raises :class:`ValidationFailed`.

    Keys in ``multi`` keep every value as a list; any other repeated key keeps its last value.
    """
    data: dict[str, object] = {key: value for key, value in params.multi_items()}
    for key in multi:
        if key in params:
            data[key] = params.getlist(key)
    return validate(model, data, what="query")
