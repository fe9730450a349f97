from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.tracking import frames
from tripline.tracking.frames import (
    MAX_CLIENT_FRAME_CHARS,
    FrameError,
    Ping,
    parse_client_frame,
)


def error_code(text: str | None) -> str:
    with pytest.raises(FrameError) as caught:
        parse_client_frame(text)
    assert caught.value.message
    assert str(caught.value) == caught.value.message
    return caught.value.code


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"ping"}',
        '{"type": "ping", "extra": [1, 2]}',
        ' \n{"type":"ping"}\t',
        '{"id":7,"type":"ping"}',
    ],
)
def test_a_ping_is_parsed(text: str) -> None:
    assert parse_client_frame(text) == Ping()


@pytest.mark.parametrize("text", ["", "{", "ping", '{"type":"ping"', "{'type':'ping'}", "nul"])
def test_malformed_json_is_a_malformed_frame(text: str) -> None:
    assert error_code(text) == "malformed-frame"


@pytest.mark.parametrize("text", ['"ping"', '["ping"]', "1", "null", "true", '[{"type":"ping"}]'])
def test_a_json_value_that_is_no_object_is_a_malformed_frame(text: str) -> None:
    assert error_code(text) == "malformed-frame"


@pytest.mark.parametrize(
    "text", ["{}", '{"kind":"ping"}', '{"type":null}', '{"type":1}', '{"type":["ping"]}']
)
def test_an_object_without_a_string_type_is_a_malformed_frame(text: str) -> None:
    assert error_code(text) == "malformed-frame"


def test_a_binary_frame_is_a_malformed_frame() -> None:
    assert error_code(None) == "malformed-frame"


def test_an_oversized_frame_is_too_large() -> None:
    padding = " " * (MAX_CLIENT_FRAME_CHARS - len('{"type":"ping"}') + 1)
    assert error_code('{"type":"ping"}' + padding) == "frame-too-large"
    assert error_code("x" * (MAX_CLIENT_FRAME_CHARS + 1)) == "frame-too-large"


def test_a_frame_of_exactly_the_limit_is_read() -> None:
    padding = " " * (MAX_CLIENT_FRAME_CHARS - len('{"type":"ping"}'))
    assert parse_client_frame('{"type":"ping"}' + padding) == Ping()


@pytest.mark.parametrize("kind", ["pong", "PING", "subscribe", "", "snapshot"])
def test_an_unknown_type_is_an_unsupported_frame(kind: str) -> None:
    assert error_code(json.dumps({"type": kind})) == "unsupported-frame"


@pytest.mark.parametrize("text", ["[" * 2000 + "]" * 2000, '{"a":' * 600 + "1" + "}" * 600])
def test_deeply_nested_json_is_a_malformed_frame(text: str) -> None:
    assert len(text) <= MAX_CLIENT_FRAME_CHARS
    assert error_code(text) == "malformed-frame"


def test_snapshot_encodes_its_documented_fields() -> None:
    location = {"lat": 52.5, "lon": 13.4, "seq": 3}
    encoded = frames.snapshot(3, location, status="on_trip")
    assert json.loads(encoded) == {
        "type": "snapshot",
        "seq": 3,
        "location": location,
        "status": "on_trip",
    }
    assert " " not in encoded


def test_an_empty_snapshot_has_null_location_and_status() -> None:
    assert json.loads(frames.snapshot(0, None, status=None)) == {
        "type": "snapshot",
        "seq": 0,
        "location": None,
        "status": None,
    }


def test_pong_encodes_its_type() -> None:
    assert frames.pong() == '{"type":"pong"}'


def test_error_encodes_code_and_message() -> None:
    encoded = frames.error(FrameError("unsupported-frame", "frames of type 'x' are not accepted"))
    assert json.loads(encoded) == {
        "type": "error",
        "code": "unsupported-frame",
        "message": "frames of type 'x' are not accepted",
    }


def test_the_error_of_a_parsed_frame_round_trips() -> None:
    with pytest.raises(FrameError) as caught:
        parse_client_frame('{"type":"nope"}')
    decoded = json.loads(frames.error(caught.value))
    assert decoded["code"] == "unsupported-frame"
    assert "'nope'" in decoded["message"]


CODES = {"malformed-frame", "frame-too-large", "unsupported-frame"}


def only_ping_or_frame_error(text: str | None) -> None:
    try:
        result: Ping | FrameError = parse_client_frame(text)
    except FrameError as exc:
        result = exc
    if isinstance(result, FrameError):
        assert result.code in CODES
    else:
        assert result == Ping()


@given(st.text())
def test_arbitrary_text_is_a_ping_or_a_frame_error(text: str) -> None:
    only_ping_or_frame_error(text)


@given(st.text(max_size=MAX_CLIENT_FRAME_CHARS + 50))
def test_arbitrary_text_up_to_the_limit_is_a_ping_or_a_frame_error(text: str) -> None:
    only_ping_or_frame_error(text)


JSON: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_arbitrary_json_is_a_ping_or_a_frame_error(value: Any) -> None:
    only_ping_or_frame_error(json.dumps(value))


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=4), JSON)
def test_an_object_is_a_ping_exactly_when_its_type_is_ping(
    fields: dict[str, Any], kind: Any
) -> None:
    text = json.dumps({**fields, "type": kind})
    if kind == "ping" and isinstance(kind, str):
        assert parse_client_frame(text) == Ping()
    else:
        expected = "unsupported-frame" if isinstance(kind, str) else "malformed-frame"
        assert error_code(text) == expected
