"""One HTTP call to the gateway, made to survive a bad network.

Each attempt has its own timeout. An attempt that fails with a network error, 429, 502, 503 or
504 is tried again, at most ``max_retries`` times, after a backoff with full jitter that is never
shorter than the server's ``Retry-After`` (:mod:`tripline_client.backoff`), and only while the
retry budget allows (:mod:`tripline_client.budget`).

A write is replayed only when it carries an ``Idempotency-Key``, so the platform applies it once
however many times it arrives: the transport gives every write a fresh key unless the caller
passes its own (the offline queue passes the action's id) or ``None``. Without a key a write is
tried again only when it certainly was not applied: the connection was refused, or the
platform said "not now" (429 from the limits; 503 from shedding, an open breaker, or a service
that could not do the work).
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tripline_client._version import __version__
from tripline_client.backoff import Backoff, parse_retry_after
from tripline_client.budget import RetryBudget
from tripline_client.errors import (
    InvalidRequest,
    NetworkError,
    RequestTimeout,
    RetryBudgetExhausted,
    TriplineError,
    UnexpectedResponse,
    ValidationError,
    from_problem,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
# The gateway answers these before any service has seen the request.
UNPROCESSED_STATUSES = frozenset({429, 503})


class Auto(enum.Enum):
    """The marker for "let the transport choose" (a fresh key for a write, none for a read)."""

    KEY = "auto"


AUTO = Auto.KEY


@dataclass(frozen=True)
class Response:
    """A successful answer: its status, headers and JSON body (``None`` when empty)."""

    status: int
    headers: Mapping[str, str]
    body: Any


NetworkObserver = Callable[[bool], None]


class Transport:
    """Calls to one gateway with one pooled HTTP client; close it with :meth:`aclose`."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        timeout_s: float,
        max_retries: int,
        backoff: Backoff,
        budget: RetryBudget,
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
        clock: Callable[[], float],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff = backoff
        self.budget = budget
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._observers: list[NetworkObserver] = []
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url,
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=4),
            headers={"user-agent": f"tripline-client/{__version__}"},
        )

    def observe_network(self, observer: NetworkObserver) -> None:
        """Call ``observer(True)`` whenever the gateway answers and ``observer(False)`` when it
        cannot be reached; the connectivity monitor listens here."""
        self._observers.append(observer)

    def ws_url(self, path: str) -> str:
        """The WebSocket URL for ``path`` on the gateway (``ws://`` or ``wss://``)."""
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url.removeprefix("https://") + path
        return "ws://" + self.base_url.removeprefix("http://") + path

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int | float] | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None | Auto = AUTO,
        max_retries: int | None = None,
        authenticated: bool = True,
    ) -> Response:
        """Send ``method path`` and return the successful answer.

        Raises a :class:`TriplineError`: the platform's refusal mapped from its problem
        ``type``, :class:`NetworkError` / :class:`RequestTimeout` when no answer came,
        :class:`RetryBudgetExhausted` when a retry was due but the budget said no,
        :class:`UnexpectedResponse` for a redirect or a success that is not JSON (a network's
        sign-in page), :class:`ValidationError` when ``json_body`` is not JSON-able. The error
        of a retried call is the last attempt's.
        """
        method = method.upper()
        if idempotency_key is AUTO:
            key = None if method in SAFE_METHODS else uuid.uuid4().hex
        else:
            key = idempotency_key
        headers = {"accept": "application/json"}
        body = None if json_body is None else _encode(json_body)
        if body is not None:
            headers["content-type"] = "application/json"
        if key is not None:
            headers["idempotency-key"] = key
        replayable = method in SAFE_METHODS or key is not None
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            if authenticated:
                headers["authorization"] = f"Bearer {self.token()}"
            error, reached = await self._attempt(
                method, path, body, params, headers, timeout_s or self.timeout_s
            )
            if isinstance(error, Response):
                return error
            attempt += 1
            may_repeat = replayable or not reached or error.status in UNPROCESSED_STATUSES
            if attempt > retries or not may_repeat:
                raise error
            await self._wait_to_retry(attempt, error)

    async def upload(
        self, url: str, fields: Mapping[str, str], filename: str, data: bytes, content_type: str
    ) -> None:
        """POST ``data`` to a presigned storage URL as a form (``fields`` first, then the file).

        Retried like a read: the key is fixed by the presign, so a repeat stores the same
        object. Raises :class:`TriplineError` (storage refusals map by HTTP status).
        """
        attempt = 0
        while True:
            error: TriplineError
            try:
                answer = await self._http.post(
                    url,
                    data=dict(fields),
                    files={"file": (filename, data, content_type)},
                    timeout=max(self.timeout_s, 60.0),
                )
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as bad:
                raise InvalidRequest(f"the upload cannot be sent: {bad}") from bad
            except httpx.HTTPError as failure:
                error = _network_error(failure)
            else:
                if answer.status_code < 300:
                    return
                error = from_problem(answer.status_code, b"")
                error.detail = f"storage refused the upload: {answer.text[:300]}"
            attempt += 1
            if attempt > self.max_retries:
                raise error
            await self._wait_to_retry(attempt, error)

    async def aclose(self) -> None:
        """Close the pooled connections; the transport cannot be used afterwards."""
        await self._http.aclose()

    async def _attempt(
        self,
        method: str,
        path: str,
        body: bytes | None,
        params: Mapping[str, str | int | float] | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> tuple[Response | TriplineError, bool]:
        """One attempt: the answer or its error, and whether the request may have been sent."""
        try:
            answer = await self._http.request(
                method,
                path,
                content=body,
                params=params,
                headers=headers,
                timeout=timeout_s,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as failure:
            self._tell(reachable=False)
            return _network_error(failure), False
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as failure:
            # Our own request cannot be sent (a bad base URL, a token with a line break): no
            # network would help, and the gateway's reachability is unknown.
            return InvalidRequest(f"the request cannot be sent: {failure}"), False
        except httpx.HTTPError as failure:
            self._tell(reachable=False)
            return _network_error(failure), True
        status = answer.status_code
        if 300 <= status < 400:
            self._tell(reachable=False)
            where = answer.headers.get("location", "elsewhere")
            return UnexpectedResponse(f"redirected to {where}", status=status), True
        if status >= 400:
            self._tell(reachable=True)
            self.budget.record(accepted=status not in RETRIED_STATUSES)
            retry_after = parse_retry_after(answer.headers.get("retry-after"), now=self._clock())
            return from_problem(status, answer.content, retry_after=retry_after), True
        try:
            response = _response(answer)
        except UnexpectedResponse as error:
            self._tell(reachable=False)
            return error, True
        self._tell(reachable=True)
        self.budget.record(accepted=True)
        return response, True

    async def _wait_to_retry(self, attempt: int, error: TriplineError) -> None:
        """Sleep before retry number ``attempt`` after ``error``; raises ``error`` when it is not
        one to retry or its ``Retry-After`` is past the cap, and :class:`RetryBudgetExhausted`
        when the budget says no."""
        if not (isinstance(error, NetworkError) or error.status in RETRIED_STATUSES):
            raise error
        delay = self.backoff.delay(attempt, rand=self._rand, retry_after=error.retry_after)
        if delay is None:
            raise error
        if not self.budget.allow_retry():
            raise RetryBudgetExhausted(
                f"retry not sent, too many recent failures; last: {error.detail}",
                status=error.status,
                retry_after=error.retry_after,
                problem=error.problem,
                user_message=error.user_message,
            ) from error
        await self._sleep(delay)

    def _tell(self, *, reachable: bool) -> None:
        if not reachable:
            self.budget.record(accepted=False)
        for observer in self._observers:
            observer(reachable)


def _encode(value: Any) -> bytes:
    """``value`` as JSON; raises :class:`ValidationError` when it cannot be (NaN, a set...)."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as failure:
        raise ValidationError(f"the request body cannot be sent as JSON: {failure}") from failure


def _network_error(failure: httpx.HTTPError) -> NetworkError:
    if isinstance(failure, httpx.TimeoutException):
        return RequestTimeout(f"no answer in time: {type(failure).__name__}")
    return NetworkError(f"cannot reach the platform: {type(failure).__name__}: {failure}")


def _response(answer: httpx.Response) -> Response:
    if not answer.content:
        return Response(answer.status_code, answer.headers, None)
    try:
        body = json.loads(answer.content)
    except ValueError as failure:
        raise UnexpectedResponse(
            f"the answer to a call was not JSON (HTTP {answer.status_code})",
            status=answer.status_code,
        ) from failure
    return Response(answer.status_code, answer.headers, body)
