from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tripline.common.logs import add_trace_context, configure_logging, get_logger

UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(scope="module")
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider()
    yield provider.get_tracer("test")
    provider.shutdown()


def test_adds_trace_and_span_id_inside_an_active_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("work") as span:
        event = add_trace_context(None, "info", {"event": "hello"})
    context = span.get_span_context()
    assert event["event"] == "hello"
    assert re.fullmatch(r"[0-9a-f]{32}", event["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", event["span_id"])
    assert int(event["trace_id"], 16) == context.trace_id
    assert int(event["span_id"], 16) == context.span_id


def test_adds_nothing_outside_a_span() -> None:
    event: dict[str, Any] = {"event": "hello", "x": 1}
    assert add_trace_context(None, "info", event) == {"event": "hello", "x": 1}


def test_adds_ids_of_a_valid_non_recording_span() -> None:
    context = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(context)):
        event = add_trace_context(None, "info", {"event": "e"})
    assert event["trace_id"] == "0" * 29 + "abc"
    assert event["span_id"] == "0" * 13 + "def"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_uvicorn = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in UVICORN
    }
    saved_uvicorn_levels = {name: logging.getLogger(name).level for name in UVICORN}
    saved_structlog = structlog.get_config()
    yield
    structlog.configure(**saved_structlog)
    structlog.contextvars.unbind_contextvars("service")
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for name, (handlers, propagate) in saved_uvicorn.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(saved_uvicorn_levels[name])


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_writes_one_json_object_per_line(
    capsys: pytest.CaptureFixture[str], tracer: trace.Tracer
) -> None:
    configure_logging("svc", "info")
    logging.getLogger("stdlib.test").info("from stdlib")
    logging.getLogger("stdlib.test").debug("too quiet")
    with tracer.start_as_current_span("op") as span:
        get_logger("structlog.test").warning("from structlog", trip_id="t-1")
    lines = json_lines(capsys.readouterr().out)
    assert [line["event"] for line in lines] == ["from stdlib", "from structlog"]
    stdlib, native = lines
    assert stdlib["level"] == "info"
    assert stdlib["logger"] == "stdlib.test"
    assert stdlib["service"] == "svc"
    assert "timestamp" in stdlib
    assert "trace_id" not in stdlib
    assert native["level"] == "warning"
    assert native["trip_id"] == "t-1"
    assert native["trace_id"] == format(span.get_span_context().trace_id, "032x")


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_routes_uvicorn_through_root(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "DEBUG")
    logging.getLogger("uvicorn.error").info("server started")
    logging.getLogger("uvicorn.access").info("GET / 200")
    lines = json_lines(capsys.readouterr().out)
    assert [line["event"] for line in lines] == ["server started"]
    assert all(not logging.getLogger(name).handlers for name in UVICORN)


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", json_output=False)
    logging.getLogger("plain").warning("readable line")
    out = capsys.readouterr().out
    assert "readable line" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])
