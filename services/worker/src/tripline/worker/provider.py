"""An outside provider (payments, notifications) over HTTP, behind this process's breaker."""

from __future__ import annotations

from typing import Any

import httpx

from tripline.common.breaker import CircuitBreaker
from tripline.common.providers import AnswerKind, classify
from tripline.worker.retrying import TransientFailure


class ProviderClient:
    """POSTs to one provider endpoint through one breaker; one per worker process."""

    def __init__(self, url: str, *, http: httpx.Client, breaker: CircuitBreaker) -> None:
        self._url = url
        self._http = http
        self._breaker = breaker

    def post(self, body: dict[str, Any], *, idempotency_key: str) -> httpx.Response:
        """Send ``body`` and return the provider's answer, a success or a refusal for good.

        Raises :class:`TransientFailure` when the provider is unreachable, times out, answers
        with a transient status, or the breaker is open: the caller retries later.
        """
        if not self._breaker.try_acquire():
            raise TransientFailure(f"breaker open for {self._breaker.retry_after_s():.1f}s")
        try:
            response = self._http.post(
                self._url, json=body, headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.TimeoutException as exc:
            self._breaker.record_timeout()
            raise TransientFailure(f"provider did not answer in time: {exc!r}") from exc
        except httpx.TransportError as exc:
            self._breaker.record_failure()
            raise TransientFailure(f"provider unreachable: {exc!r}") from exc
        except BaseException:
            self._breaker.release()
            raise
        if classify(response.status_code) is AnswerKind.TRANSIENT:
            self._breaker.record_failure()
            raise TransientFailure(f"provider answered {response.status_code}")
        self._breaker.record_success()
        return response
