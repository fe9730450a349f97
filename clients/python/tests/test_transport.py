"""The transport's retry decisions, on httpx's in-memory transport (no sockets): which answers
and failures are tried again, with which waits and keys."""

import json

import httpx
import pytest

from tripline_client import errors
from tripline_client.backoff import Backoff
from tripline_client.budget import RetryBudget
from tripline_client.transport import Transport


def fixed_clock() -> float:
    return 1_700_000_000.0


class Recorder:
    """The requests a fake gateway saw and the waits the transport took."""

    def __init__(self, answers: list[httpx.Response | Exception]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)


def problem(status: int, slug: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/problem+json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {"type": f"https://tripline.dev/problems/{slug}", "title": slug, "status": status}
    return httpx.Response(status, headers=headers, content=json.dumps(body).encode())


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {"ok": True})


def transport(
    recorder: Recorder,
    *,
    max_retries: int = 3,
    draw: float = 0.5,
    budget: RetryBudget | None = None,
    cap_s: float = 20,
) -> Transport:
    clock = fixed_clock
    http = httpx.AsyncClient(
        base_url="http://gateway.test", transport=httpx.MockTransport(recorder.handle)
    )
    return Transport(
        "http://gateway.test/",
        lambda: "token-1",
        timeout_s=5,
        max_retries=max_retries,
        backoff=Backoff(base_s=0.5, cap_s=cap_s),
        budget=budget or RetryBudget(clock=clock, rand=lambda: 0.99, grace=1000),
        sleep=recorder.sleep,
        rand=lambda: draw,
        clock=clock,
        http=http,
    )


async def test_a_read_is_retried_through_503s_honouring_retry_after() -> None:
    recorder = Recorder([problem(503, "circuit-open", "4"), problem(503, "overloaded"), ok()])
    response = await transport(recorder).request("GET", "/api/trips/t1")
    assert response.body == {"ok": True}
    assert len(recorder.requests) == 3
    assert recorder.sleeps[0] >= 4
    assert recorder.sleeps[1] == 0.5  # half of the second ceiling, 1 s
    assert recorder.requests[0].headers["authorization"] == "Bearer token-1"
    assert "idempotency-key" not in recorder.requests[0].headers


async def test_429_is_retried_after_its_retry_after() -> None:
    recorder = Recorder([problem(429, "rate-limited", "3"), ok()])
    await transport(recorder).request("GET", "/api/users/me")
    assert recorder.sleeps == [3]


async def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    recorder = Recorder([problem(503, "circuit-open", "1")])
    with pytest.raises(errors.CircuitOpen) as raised:
        await transport(recorder, max_retries=3).request("GET", "/api/trips/t1")
    assert len(recorder.requests) == 4
    assert raised.value.retry_after == 1
    assert len(recorder.sleeps) == 3


async def test_a_wait_longer_than_the_cap_is_not_taken() -> None:
    recorder = Recorder([problem(429, "rate-limited", "45"), ok()])
    with pytest.raises(errors.RateLimited) as raised:
        await transport(recorder, cap_s=20).request("GET", "/api/users/me")
    assert raised.value.retry_after == 45
    assert recorder.sleeps == []


async def test_every_write_gets_one_key_kept_across_its_attempts() -> None:
    recorder = Recorder([httpx.ReadError("reset"), problem(502, "upstream-unavailable"), ok()])
    await transport(recorder).request("POST", "/api/trips", json_body={"a": 1})
    keys = {request.headers["idempotency-key"] for request in recorder.requests}
    assert len(recorder.requests) == 3
    assert len(keys) == 1
    assert len(keys.pop()) == 32


async def test_two_writes_get_different_keys() -> None:
    recorder = Recorder([ok()])
    client = transport(recorder)
    await client.request("POST", "/api/trips", json_body={})
    await client.request("POST", "/api/trips", json_body={})
    first, second = (request.headers["idempotency-key"] for request in recorder.requests)
    assert first != second


async def test_the_callers_key_is_used() -> None:
    recorder = Recorder([ok()])
    await transport(recorder).request("POST", "/x", json_body={}, idempotency_key="action-7")
    assert recorder.requests[0].headers["idempotency-key"] == "action-7"


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (httpx.ConnectError("refused"), True),
        (problem(503, "overloaded"), True),
        (problem(429, "rate-limited"), True),
        (httpx.ReadError("reset mid-answer"), False),
        (httpx.ReadTimeout("slow"), False),
        (problem(502, "upstream-unavailable"), False),
        (problem(504, "upstream-timeout"), False),
    ],
)
async def test_a_write_without_a_key_is_repeated_only_when_it_was_not_processed(
    failure: httpx.Response | Exception, retried: bool
) -> None:
    recorder = Recorder([failure, ok()])
    client = transport(recorder)
    if retried:
        await client.request("POST", "/api/trips", json_body={}, idempotency_key=None)
        assert len(recorder.requests) == 2
    else:
        with pytest.raises(errors.TriplineError):
            await client.request("POST", "/api/trips", json_body={}, idempotency_key=None)
        assert len(recorder.requests) == 1
    assert "idempotency-key" not in recorder.requests[0].headers


@pytest.mark.parametrize(
    ("answer", "cls"),
    [
        (problem(422, "validation-error"), errors.ValidationError),
        (problem(409, "conflict"), errors.Conflict),
        (problem(401, "unauthorized"), errors.Unauthorized),
        (problem(500, "internal-error"), errors.InternalError),
    ],
)
async def test_refusals_are_not_retried(
    answer: httpx.Response, cls: type[errors.TriplineError]
) -> None:
    recorder = Recorder([answer, ok()])
    with pytest.raises(cls):
        await transport(recorder).request("GET", "/api/trips/t1")
    assert len(recorder.requests) == 1


async def test_no_answer_in_time_is_a_request_timeout() -> None:
    recorder = Recorder([httpx.ReadTimeout("slow")])
    with pytest.raises(errors.RequestTimeout) as raised:
        await transport(recorder, max_retries=1).request("GET", "/api/trips/t1")
    assert raised.value.transient
    assert len(recorder.requests) == 2


async def test_an_exhausted_budget_stops_the_retry_and_keeps_the_cause() -> None:
    clock = fixed_clock
    budget = RetryBudget(clock=clock, rand=lambda: 0.5, grace=0)
    for _ in range(20):
        budget.record(accepted=False)
    recorder = Recorder([problem(503, "overloaded"), ok()])
    with pytest.raises(errors.RetryBudgetExhausted) as raised:
        await transport(recorder, budget=budget).request("GET", "/api/trips/t1")
    assert isinstance(raised.value.__cause__, errors.Overloaded)
    assert raised.value.user_message == errors.Overloaded.default_message
    assert len(recorder.requests) == 1


async def test_observers_hear_whether_the_gateway_answered() -> None:
    recorder = Recorder([httpx.ConnectError("down"), problem(404, "not-found")])
    client = transport(recorder, max_retries=1)
    seen: list[bool] = []
    client.observe_network(seen.append)
    with pytest.raises(errors.NotFound):
        await client.request("GET", "/api/trips/t1")
    assert seen == [False, True]


async def test_a_success_that_is_not_json_is_an_unexpected_response() -> None:
    recorder = Recorder([httpx.Response(200, content=b"<html>portal login</html>")])
    with pytest.raises(errors.UnexpectedResponse):
        await transport(recorder).request("GET", "/api/trips/t1")


async def test_an_empty_success_has_no_body() -> None:
    recorder = Recorder([httpx.Response(202)])
    response = await transport(recorder).request("POST", "/api/analytics/events", json_body={})
    assert response.status == 202
    assert response.body is None


def test_websocket_urls_follow_the_scheme() -> None:
    recorder = Recorder([ok()])
    assert transport(recorder).ws_url("/ws/trips/t") == "ws://gateway.test/ws/trips/t"


async def test_a_redirect_is_a_network_that_is_not_letting_us_through() -> None:
    recorder = Recorder([httpx.Response(302, headers={"location": "http://wifi.login/"})])
    client = transport(recorder)
    seen: list[bool] = []
    client.observe_network(seen.append)
    with pytest.raises(errors.UnexpectedResponse) as raised:
        await client.request("POST", "/api/trips/t1/sos", json_body={})
    assert raised.value.transient
    assert "wifi.login" in raised.value.detail
    assert seen == [False]


async def test_a_sign_in_page_is_not_an_answer_from_the_platform() -> None:
    recorder = Recorder([httpx.Response(200, content=b"<html>Welcome! Accept the terms</html>")])
    client = transport(recorder)
    seen: list[bool] = []
    client.observe_network(seen.append)
    with pytest.raises(errors.UnexpectedResponse):
        await client.request("GET", "/api/trips/t1")
    assert seen == [False]


async def test_a_request_that_cannot_be_sent_is_refused_without_blaming_the_network() -> None:
    # What httpx's HTTP/1.1 layer raises for a header it may not send, e.g. a line break.
    recorder = Recorder([httpx.LocalProtocolError("Illegal header value"), ok()])
    client = transport(recorder)
    seen: list[bool] = []
    client.observe_network(seen.append)
    with pytest.raises(errors.InvalidRequest) as raised:
        await client.request("GET", "/api/trips/t1")
    assert not raised.value.transient
    assert seen == []
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("body", [{"lat": float("nan")}, {"tags": {"a", "b"}}])
async def test_a_body_that_is_not_json_is_a_validation_error(body: object) -> None:
    recorder = Recorder([ok()])
    with pytest.raises(errors.ValidationError):
        await transport(recorder).request("POST", "/api/trips", json_body=body)
    assert recorder.requests == []
