from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from tripline.common.breaker import BreakerState, CircuitBreaker
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.monitor.alerting import Alert, Notice, NoticeKind, Severity
from tripline.monitor.webhook import AlertNotifier, notice_text, slack_payload

STARTED = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def alert(
    *,
    subject: str = "gateway",
    severity: Severity = Severity.CRITICAL,
    resolved_at: float | None = None,
) -> Alert:
    return Alert(
        rule="error_rate",
        subject=subject,
        severity=severity,
        summary=f"{subject}: 7.5% of requests failed over 5 min (limit 1%)",
        value=0.075,
        threshold=0.01,
        started_at=STARTED,
        last_sent_at=STARTED,
        resolved_at=resolved_at,
    )


FIRING = Notice(NoticeKind.FIRING, alert())
RESOLVED = Notice(NoticeKind.RESOLVED, alert(resolved_at=STARTED + 600))


@dataclass
class Receiver:
    """A webhook endpoint that records every body and answers ``answers`` in order, then 200."""

    bodies: list[Any] = field(default_factory=list)
    answers: list[Response] = field(default_factory=list)
    hold: asyncio.Event | None = None
    url: str = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.bodies.append(await request.json())
            if self.hold is not None:
                await self.hold.wait()
            if self.answers:
                return self.answers.pop(0)
            return PlainTextResponse("ok")

        return Starlette(routes=[Route("/hook/T000/B000/secret", hook, methods=["POST"])])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    async with serve_app(state.app()) as base_url:
        state.url = f"{base_url}/hook/T000/B000/secret"
        yield state
        if state.hold is not None:
            state.hold.set()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


@dataclass
class Sleeps:
    """Stands in for ``asyncio.sleep``: records the delays, waits for none."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def events(logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(entry["log_level"], entry["event"]) for entry in logs]


# The payload


def test_a_firing_notice_is_slack_text_with_a_red_attachment() -> None:
    text = "[FIRING] gateway: 7.5% of requests failed over 5 min (limit 1%)"
    assert notice_text(FIRING) == text
    assert slack_payload(FIRING) == {
        "text": text,
        "attachments": [
            {
                "fallback": text,
                "color": "danger",
                "fields": [
                    {"title": "Alert", "value": "error_rate:gateway", "short": True},
                    {"title": "Severity", "value": "critical", "short": True},
                    {"title": "Value", "value": "0.075", "short": True},
                    {"title": "Threshold", "value": "0.01", "short": True},
                    {"title": "Since", "value": "2023-11-14 22:13:20 UTC", "short": True},
                ],
            }
        ],
    }


def test_a_resolved_notice_is_green_and_says_when() -> None:
    payload = slack_payload(RESOLVED)
    assert payload["text"].startswith("[RESOLVED] gateway: ")
    (attachment,) = payload["attachments"]
    assert attachment["color"] == "good"
    assert attachment["fields"][-1] == {
        "title": "Resolved",
        "value": "2023-11-14 22:23:20 UTC",
        "short": True,
    }


def test_a_repeated_warning_is_yellow_and_says_still_firing() -> None:
    payload = slack_payload(Notice(NoticeKind.REPEAT, alert(severity=Severity.WARNING)))
    assert payload["text"].startswith("[STILL FIRING] gateway: ")
    assert payload["attachments"][0]["color"] == "warning"


# Delivery


async def test_notices_are_posted_in_order(receiver: Receiver, client: httpx.AsyncClient) -> None:
    notifier = AlertNotifier(client, receiver.url, sleep=Sleeps())
    with capture_logs() as logs:
        await notifier.deliver([FIRING, RESOLVED])
    assert receiver.bodies == [slack_payload(FIRING), slack_payload(RESOLVED)]
    assert events(logs) == [("warning", "alert firing"), ("info", "alert resolved")]


async def test_every_notice_is_logged_with_its_alert(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    notifier = AlertNotifier(client, receiver.url, sleep=Sleeps())
    repeat = Notice(NoticeKind.REPEAT, alert(subject="core"))
    with capture_logs() as logs:
        await notifier.deliver([repeat, RESOLVED])
    still, resolved = logs
    assert still["event"] == "alert still firing"
    assert still["log_level"] == "warning"
    assert still["alert_id"] == "error_rate:core"
    assert still["severity"] == "critical"
    assert still["value"] == 0.075
    assert still["summary"] == "core: 7.5% of requests failed over 5 min (limit 1%)"
    assert resolved["resolved_at"] == STARTED + 600


async def test_a_500_is_tried_again_after_a_backoff(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.answers = [PlainTextResponse("down", 500), PlainTextResponse("down", 502)]
    sleeps = Sleeps()
    notifier = AlertNotifier(client, receiver.url, attempts=3, backoff_s=0.5, sleep=sleeps)
    with capture_logs() as logs:
        await notifier.deliver([FIRING])
    assert receiver.bodies == [slack_payload(FIRING)] * 3
    assert sleeps.delays == [0.5, 1.0]
    assert ("error", "alert webhook failed") not in events(logs)


async def test_a_429_waits_as_long_as_it_is_asked(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.answers = [PlainTextResponse("slow down", 429, headers={"retry-after": "7"})]
    sleeps = Sleeps()
    notifier = AlertNotifier(client, receiver.url, sleep=sleeps)
    await notifier.deliver([FIRING])
    assert len(receiver.bodies) == 2
    assert sleeps.delays == [7.0]


async def test_a_refusal_is_not_tried_again_and_the_next_notice_still_goes(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.answers = [PlainTextResponse("invalid_payload", 400)]
    sleeps = Sleeps()
    notifier = AlertNotifier(client, receiver.url, sleep=sleeps)
    with capture_logs() as logs:
        await notifier.deliver([FIRING, RESOLVED])
    assert receiver.bodies == [slack_payload(FIRING), slack_payload(RESOLVED)]
    assert sleeps.delays == []
    (refused,) = [entry for entry in logs if entry["event"] == "alert webhook refused the notice"]
    assert refused["status"] == 400
    assert refused["body"] == "invalid_payload"


async def test_a_webhook_that_keeps_failing_costs_one_notice_per_batch(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.answers = [PlainTextResponse("down", 503)] * 10
    sleeps = Sleeps()
    notifier = AlertNotifier(client, receiver.url, attempts=2, sleep=sleeps)
    notices = [FIRING, Notice(NoticeKind.FIRING, alert(subject="core")), RESOLVED]
    with capture_logs() as logs:
        await notifier.deliver(notices)
    assert receiver.bodies == [slack_payload(FIRING)] * 2
    (failed,) = [entry for entry in logs if entry["event"] == "alert webhook failed"]
    assert failed["log_level"] == "error"
    assert failed["alert_id"] == "error_rate:gateway"
    assert failed["error"] == "HTTP 503"
    (skipped,) = [entry for entry in logs if entry["event"].endswith("notices not posted")]
    assert skipped["skipped"] == 2
    # Every notice was logged even so.
    assert [entry["event"] for entry in logs[:3]] == [
        "alert firing",
        "alert firing",
        "alert resolved",
    ]


async def test_without_a_url_notices_are_only_logged() -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        notifier = AlertNotifier(client, None)
        with capture_logs() as logs:
            await notifier.deliver([FIRING, RESOLVED])
    assert requests == []
    assert events(logs) == [("warning", "alert firing"), ("info", "alert resolved")]


async def test_a_webhook_that_is_down_raises_nothing(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    sleeps = Sleeps()
    notifier = AlertNotifier(client, url, attempts=3, backoff_s=0.25, sleep=sleeps)
    with capture_logs() as logs:
        await notifier.deliver([FIRING])
    assert sleeps.delays == [0.25, 0.5]
    (failed,) = [entry for entry in logs if entry["event"] == "alert webhook failed"]
    assert failed["error"].startswith("ConnectError")
    assert failed["attempts"] == 3


async def test_a_webhook_that_never_answers_is_cut_off_by_the_timeout_and_not_tried_again(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.hold = asyncio.Event()
    notifier = AlertNotifier(client, receiver.url, timeout_s=0.2, attempts=3, sleep=Sleeps())
    started = time.monotonic()
    with capture_logs() as logs:
        await notifier.deliver([FIRING])
    assert time.monotonic() - started < scaled(2)
    assert len(receiver.bodies) == 1
    (failed,) = [entry for entry in logs if entry["event"] == "alert webhook failed"]
    assert failed["error"] == "TimeoutError"
    assert failed["attempts"] == 1


async def test_after_a_failed_batch_the_webhook_is_left_alone_until_the_breaker_lets_one_through(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("alert-webhook", failure_threshold=1, reset_timeout_s=60, clock=clock)
    receiver.answers = [PlainTextResponse("down", 503)]
    notifier = AlertNotifier(client, receiver.url, attempts=1, sleep=Sleeps(), breaker=breaker)
    await notifier.deliver([FIRING])
    with capture_logs() as logs:
        await notifier.deliver([RESOLVED])
    assert receiver.bodies == [slack_payload(FIRING)]
    assert [entry["event"] for entry in logs] == [
        "alert resolved",
        "alert webhook left alone after failing",
    ]
    clock.advance(60)
    await notifier.deliver([RESOLVED])
    assert receiver.bodies == [slack_payload(FIRING), slack_payload(RESOLVED)]
    assert breaker.state is BreakerState.CLOSED


async def test_a_url_that_is_not_http_is_refused_without_echoing_it(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(ValueError, match="http") as refused:
        AlertNotifier(client, "hooks.example/T000/secret")
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize("limits", [{"timeout_s": 0}, {"attempts": 0}, {"backoff_s": -1}], ids=str)
async def test_bad_limits_are_refused(client: httpx.AsyncClient, limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        AlertNotifier(client, None, **limits)  # type: ignore[arg-type]
