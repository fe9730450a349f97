"""What a critical action's call returns: where the action stands, and a sentence for the user."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from tripline_client.actions import Action
from tripline_client.errors import ClientClosed, TriplineError
from tripline_client.outbox_store import Outcome

State = Literal["applied", "queued", "failed"]


class Delivery:
    """A critical action as its call left it: ``applied``, ``failed`` (for good: ``error``
    says why) or ``queued`` (on disk, sent when the platform can be reached; await
    :meth:`outcome` or register :meth:`Tripline.on_outcome` to learn the end)."""

    def __init__(self, action: Action, outcome: asyncio.Future[Outcome]) -> None:
        self.action = action
        self._outcome = outcome
        self.state: State = "queued"
        if outcome.done() and not outcome.cancelled():
            self.state = "applied" if outcome.result().applied else "failed"

    @property
    def action_id(self) -> str:
        return self.action.id

    @property
    def result(self) -> dict[str, Any] | None:
        """The platform's answer, once applied."""
        outcome = self._finished()
        return outcome.result if outcome is not None else None

    @property
    def error(self) -> TriplineError | None:
        """Why the action failed for good, once it has."""
        outcome = self._finished()
        return outcome.error if outcome is not None else None

    @property
    def message(self) -> str:
        """A short sentence fit to show the user."""
        if self.state == "applied":
            return self.action.kind.applied_message
        error = self.error
        if self.state == "failed" and error is not None:
            return error.user_message
        return self.action.kind.queued_message

    async def outcome(self) -> Outcome:
        """Wait for the action's final outcome (applied, or failed for good). The wait lasts
        as long as the platform is unreachable; bound it with ``asyncio.timeout`` if needed.

        Raises :class:`ClientClosed` when the client is closed first: the action stays on disk,
        and the next client's :meth:`Tripline.on_outcome` callbacks hear how it ends.
        """
        try:
            return await asyncio.shield(self._outcome)
        except asyncio.CancelledError:
            if self._outcome.cancelled():
                raise ClientClosed("the client was closed before the action finished") from None
            raise

    def _finished(self) -> Outcome | None:
        if self._outcome.done() and not self._outcome.cancelled():
            return self._outcome.result()
        return None

    def __repr__(self) -> str:
        return f"Delivery({self.action.kind}, {self.state}, id={self.action.id})"
