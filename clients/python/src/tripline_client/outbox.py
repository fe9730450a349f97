"""The offline queue: critical actions kept on disk and sent in order until each one finishes.

An action is written to SQLite before it is sent, so an app killed mid-send sends it again on
its next start; the platform deduplicates by the action's id (its ``Idempotency-Key``), so a
resend whose answer was lost is applied once. One queue holds every kind of action and is sent
strictly in order, one request at a time: a trip update never overtakes the SOS before it.

Sending the head: success finishes it as applied and the queue goes on; a transient error stops
the drain and keeps the head (one attempt counted); ``Unauthorized`` stops it and keeps the head
uncounted, until a new token; any other error is a refusal of the action as it is, so it is
finished as failed and the queue goes on: one bad action never blocks an SOS behind it.
Outcomes are kept on disk for a week, so they can be read, and are reported, after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from tripline_client.actions import Action
from tripline_client.errors import ActionExpired, InternalError, TriplineError, Unauthorized
from tripline_client.outbox_store import OutboxStore, Outcome

logger = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 50
"""500 answers in a row after which an action is given up (see :class:`Outbox`)."""

MAX_AGE_S: Final = 24 * 3600.0
"""Age after which an action not yet delivered is given up (see :class:`Outbox`)."""


class StopReason(StrEnum):
    EMPTY = "empty"
    """Every action finished: nothing is pending."""
    TRANSIENT = "transient"
    """The head failed for now: drain again when the network is back, or after a backoff."""
    UNAUTHORIZED = "unauthorized"
    """The token was refused: drain again once there is a new one."""


@dataclass(frozen=True)
class DrainStop:
    """Why :meth:`Outbox.drain` returned, with the error that stopped it (none when empty)."""

    kind: StopReason
    error: TriplineError | None = None


class Outbox:
    """Sends a store's actions with ``send``, in order, and reports how each one finished.

    ``send`` makes the action's request (with its id as ``Idempotency-Key``) and returns the
    answer's JSON body; it raises only :class:`TriplineError` for a failed request. Anything
    else it raises is a bug in it and propagates out of :meth:`drain`, the head kept unchanged.

    A transient failure keeps the action at the head, with two exceptions, so the queue never
    holds its head forever. An action older than ``max_age_s`` (a day: as long as the platform
    remembers idempotency keys) is finished as failed with :class:`ActionExpired`: sent later,
    a repeat could be applied twice, and the person is better told. And an action the platform
    answered with a 500 ``max_attempts`` times in a row is finished as failed with that error:
    the platform fails on this very request, and it would block every action behind it, an
    SOS included. Outages (no network, 429, 502-504) never count towards that: an SOS waits
    them out.
    """

    def __init__(
        self,
        store: OutboxStore,
        send: Callable[[Action], Awaitable[dict[str, Any] | None]],
        *,
        clock: Callable[[], float],
        max_attempts: int = MAX_ATTEMPTS,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        if max_attempts < 1 or max_age_s <= 0:
            raise ValueError("max_attempts must be at least 1 and max_age_s positive")
        self._store = store
        self._send = send
        self._clock = clock
        self._max_attempts = max_attempts
        self._max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._callbacks: list[Callable[[Outcome], None]] = []

    def submit(self, action: Action) -> asyncio.Future[Outcome]:
        """Persist ``action`` and return a future of its outcome (call from the event loop).

        The action is on disk when this returns; it is sent by the next :meth:`drain` (or the
        running one). The future resolves when it finishes, perhaps drains later. Submitting an
        id the store already holds writes nothing: the future is that action's, resolved at once
        when it has finished. This is how a caller after a restart awaits an action from
        :meth:`pending`. Raises :class:`StorageError` when the action could not be saved.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if not self._store.add(action):
            finished = self._store.outcome(action.id)
            if finished is not None:
                future.set_result(finished)
                return future
        self._waiters.setdefault(action.id, []).append(future)
        return future

    async def drain(self) -> DrainStop:
        """Send pending actions, oldest first, until the queue is empty or a send fails for now.

        Only one drain runs at a time; another waits for it and then goes on from where it
        stopped. Actions submitted meanwhile are sent by the running drain. Also forgets
        outcomes older than the store's retention. Raises :class:`StorageError` when the queue
        cannot be read or written, and whatever non-Tripline exception ``send`` raises.
        """
        async with self._lock:
            self._store.purge_expired(self._clock())
            while (action := self._store.head()) is not None:
                try:
                    result = await self._send(action)
                except Unauthorized as error:
                    return DrainStop(StopReason.UNAUTHORIZED, error)
                except TriplineError as error:
                    final: TriplineError | None = error
                    if error.transient:
                        attempts = self._store.record_attempt(action.id)
                        action = replace(action, attempts=attempts)
                        final = self._given_up(action, error)
                        if final is None:
                            return DrainStop(StopReason.TRANSIENT, error)
                    self._finish(action, None, final)
                else:
                    self._finish(action, result, None)
            return DrainStop(StopReason.EMPTY)

    def _given_up(self, action: Action, error: TriplineError) -> TriplineError | None:
        """The error to finish ``action`` with after this transient ``error``, or ``None`` to
        keep it queued."""
        if self._clock() - action.created_at >= self._max_age_s:
            expired = ActionExpired(
                f"not delivered within {self._max_age_s:.0f} s; last failure: {error.detail}"
            )
            expired.__cause__ = error
            return expired
        if isinstance(error, InternalError) and action.attempts >= self._max_attempts:
            return error
        return None

    def on_outcome(self, callback: Callable[[Outcome], None]) -> Callable[[], None]:
        """Call ``callback`` with the outcome of every action this outbox finishes, including
        ones submitted before a restart; returns a function that unregisters it.

        The callback runs in the drain, after the outcome is on disk: it should be quick. An
        exception it raises is logged and does not affect the queue or other callbacks.
        """
        self._callbacks.append(callback)

        def unregister() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unregister

    def release(self) -> None:
        """Cancel every future :meth:`submit` gave that has not resolved: the caller is closing
        the queue. The actions stay on disk for the next outbox on the same store."""
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()

    def pending(self) -> list[Action]:
        """The actions still to send, oldest first."""
        return self._store.pending()

    def outcome(self, action_id: str) -> Outcome | None:
        """The outcome of a finished action (kept a week), ``None`` when pending or unknown."""
        return self._store.outcome(action_id)

    def _finish(
        self, action: Action, result: dict[str, Any] | None, error: TriplineError | None
    ) -> None:
        outcome = Outcome(
            action=action,
            applied=error is None,
            result=result,
            error=error,
            finished_at=self._clock(),
        )
        self._store.finish(outcome)
        for future in self._waiters.pop(action.id, []):
            if not future.done():
                future.set_result(outcome)
        for callback in list(self._callbacks):
            try:
                callback(outcome)
            except Exception:
                logger.exception("an outcome callback failed for action %s", action.id)
