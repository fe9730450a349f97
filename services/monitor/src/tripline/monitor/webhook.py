"""Alert delivery: every notice is logged, and posted to a Slack-compatible webhook when one is set.

Delivery never raises: a webhook that is down must not stop the next evaluation, so failures are
logged and the notice is dropped (the log line, and ``GET /api/admin/alerts``, still have it).
Evaluation waits on delivery, so a webhook that hangs must not cost its timeout every
evaluation: a timed-out POST is not tried again, and a breaker skips the webhook after a batch
it failed, letting one batch through again after ``WEBHOOK_RETRY_AFTER_S``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from tripline.common.breaker import CircuitBreaker
from tripline.common.logs import get_logger
from tripline.monitor.alerting import Alert, Notice, NoticeKind, Severity

log = get_logger(__name__)

# A Retry-After longer than this is not waited for: evaluation waits on delivery.
RETRY_AFTER_CAP_S = 30.0
# After a batch the webhook failed, it is left alone this long (evaluations run every 15 s).
WEBHOOK_RETRY_AFTER_S = 60.0

_TAGS = {
    NoticeKind.FIRING: "[FIRING]",
    NoticeKind.REPEAT: "[STILL FIRING]",
    NoticeKind.RESOLVED: "[RESOLVED]",
}
_EVENTS = {
    NoticeKind.FIRING: "alert firing",
    NoticeKind.REPEAT: "alert still firing",
    NoticeKind.RESOLVED: "alert resolved",
}
_COLORS = {Severity.CRITICAL: "danger", Severity.WARNING: "warning"}


def notice_text(notice: Notice) -> str:
    """``[FIRING] gateway: 7.5% of requests failed ...``: the tag, then the alert's summary."""
    return f"{_TAGS[notice.kind]} {notice.alert.summary}"


def _timestamp(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def slack_payload(notice: Notice) -> dict[str, Any]:
    """The webhook body: Slack's ``text`` plus one attachment coloured by state and severity."""
    alert: Alert = notice.alert
    fields = [
        {"title": "Alert", "value": alert.id, "short": True},
        {"title": "Severity", "value": alert.severity.value, "short": True},
        {"title": "Value", "value": f"{alert.value:g}", "short": True},
        {"title": "Threshold", "value": f"{alert.threshold:g}", "short": True},
        {"title": "Since", "value": _timestamp(alert.started_at), "short": True},
    ]
    if alert.resolved_at is not None:
        fields.append({"title": "Resolved", "value": _timestamp(alert.resolved_at), "short": True})
    color = "good" if notice.kind is NoticeKind.RESOLVED else _COLORS[alert.severity]
    text = notice_text(notice)
    return {
        "text": text,
        "attachments": [{"fallback": text, "color": color, "fields": fields}],
    }


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after_s(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


class AlertNotifier:
    """Logs every notice and posts it to ``webhook_url`` (when set) through ``client``.

    Each POST is bounded by ``timeout_s`` as a whole; network errors, 5xx and 429 are tried
    again, up to ``attempts`` POSTs per notice, waiting ``backoff_s`` doubled each time (or the
    429's ``Retry-After``, capped at ``RETRY_AFTER_CAP_S``); a timeout is not (a webhook that
    hung will not answer a retry sooner). Any other answer is final. A batch the webhook failed
    opens ``breaker``: the next batches are only logged until it lets one through again.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        webhook_url: str | None,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            # The URL carries a secret in Slack's scheme: never echo it back in the error.
            raise ValueError("the alert webhook URL must start with http:// or https://")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must not be negative, got {backoff_s}")
        self._client = client
        self._url = webhook_url
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._breaker = breaker or CircuitBreaker(
            "alert-webhook", failure_threshold=1, reset_timeout_s=WEBHOOK_RETRY_AFTER_S
        )

    async def deliver(self, notices: Sequence[Notice]) -> None:
        """Log each notice, then post them in order; never raises.

        Once one notice could not be delivered after every attempt, the rest of this batch is
        not posted (they are logged all the same), so a dead webhook costs one notice's retries
        per evaluation, not one per notice.
        """
        for notice in notices:
            _log_notice(notice)
        if self._url is None or not notices:
            return
        if not self._breaker.try_acquire():
            log.warning("alert webhook left alone after failing", skipped=len(notices))
            return
        try:
            for index, notice in enumerate(notices):
                if not await self._post(self._url, notice):
                    skipped = len(notices) - index - 1
                    if skipped:
                        log.warning(
                            "alert webhook unreachable, notices not posted", skipped=skipped
                        )
                    self._breaker.record_failure()
                    return
        except BaseException:
            self._breaker.release()
            raise
        self._breaker.record_success()

    async def _post(self, url: str, notice: Notice) -> bool:
        """Post one notice; ``False`` only when the webhook stayed unreachable or failing (a
        refusal such as 400 is final for this notice but says the webhook is there)."""
        payload = slack_payload(notice)
        for attempt in range(1, self._attempts + 1):
            delay = self._backoff_s * 2 ** (attempt - 1)
            try:
                # The whole exchange, not each read: a webhook dripping bytes is cut off too.
                async with asyncio.timeout(self._timeout_s):
                    response = await self._client.post(url, json=payload)
            except (httpx.TimeoutException, TimeoutError) as exc:
                outcome = f"{type(exc).__name__}: {exc}".rstrip(": ")
                break
            except httpx.HTTPError as exc:
                outcome = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.is_success:
                    return True
                if not _retryable(response.status_code):
                    log.error(
                        "alert webhook refused the notice",
                        alert_id=notice.alert.id,
                        status=response.status_code,
                        body=response.text[:200],
                    )
                    return True
                outcome = f"HTTP {response.status_code}"
                retry_after = _retry_after_s(response)
                if retry_after is not None:
                    delay = retry_after
            if attempt < self._attempts:
                log.info(
                    "alert webhook failed, retrying",
                    alert_id=notice.alert.id,
                    attempt=attempt,
                    error=outcome,
                    retry_in_s=delay,
                )
                await self._sleep(delay)
        log.error(
            "alert webhook failed",
            alert_id=notice.alert.id,
            kind=notice.kind.value,
            attempts=attempt,
            error=outcome,
        )
        return False


def _log_notice(notice: Notice) -> None:
    alert = notice.alert
    fields: dict[str, Any] = {
        "alert_id": alert.id,
        "rule": alert.rule,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "value": alert.value,
        "threshold": alert.threshold,
        "summary": alert.summary,
        "started_at": alert.started_at,
    }
    if notice.kind is NoticeKind.RESOLVED:
        log.info(_EVENTS[notice.kind], resolved_at=alert.resolved_at, **fields)
    else:
        log.warning(_EVENTS[notice.kind], **fields)
