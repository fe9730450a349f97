"""The chaos client's one way to call the platform: through the gateway as an app does, every
call bounded, every failure an answer (status 0 when none came) rather than an exception, and
retries of a write only with the same ``Idempotency-Key``, as the SDK retries."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET

# Longer than the gateway's longest route timeout for these calls (15 s for a payment), so the
# platform, not the client, decides when a call has failed.
CALL_TIMEOUT_S = 16.0
# Answers that mean "try again later" to an app; anything else is final.
RETRIED = frozenset({0, 408, 425, 429, 500, 502, 503, 504})
TOKEN_TTL_S = 6 * 3600


@dataclass(frozen=True)
class Person:
    """A signed-in user of the run."""

    sub: str
    role: Role

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.sub, self.role)}"}


_TOKENS: dict[tuple[str, Role], str] = {}


def token(sub: str, role: Role) -> str:
    """A local token for ``sub`` (made once per person and run)."""
    key = (sub, role)
    if key not in _TOKENS:
        _TOKENS[key] = mint_token(LOCAL_JWT_SECRET, sub=sub, role=role, ttl_s=TOKEN_TTL_S)
    return _TOKENS[key]


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Answer:
    """A call's outcome: ``status`` 0 when no answer came, ``body`` the JSON (or None)."""

    status: int
    body: Any
    latency_s: float
    instance: str = ""

    @property
    def retryable(self) -> bool:
        return self.status in RETRIED


class Api:
    """Calls through the gateway at ``base_url``."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        who: Person | None = None,
        *,
        body: Mapping[str, Any] | None = None,
        key: str | None = None,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> Answer:
        """One call; never raises for a failed or missing answer."""
        headers = dict(who.headers) if who else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        started = time.monotonic()
        try:
            response = await self.http.request(
                method,
                f"{self.base_url}{path}",
                json=body,
                headers=headers,
                timeout=timeout_s,
            )
        except httpx.HTTPError:
            return Answer(0, None, time.monotonic() - started)
        latency = time.monotonic() - started
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = None
        instance = response.headers.get("tripline-instance", "")
        return Answer(response.status_code, parsed, latency, instance)

    async def until_final(
        self,
        method: str,
        path: str,
        who: Person,
        *,
        body: Mapping[str, Any] | None = None,
        key: str | None = None,
        deadline_s: float,
        pause_s: float = 1.0,
    ) -> Answer:
        """Call until the answer is final (not in :data:`RETRIED`) or ``deadline_s`` passes,
        every attempt with the same ``key``; returns the last answer."""
        give_up = time.monotonic() + deadline_s
        while True:
            answer = await self.call(method, path, who, body=body, key=key)
            if not answer.retryable or time.monotonic() + pause_s > give_up:
                return answer
            await asyncio.sleep(pause_s)
