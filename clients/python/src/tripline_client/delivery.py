"""What a critical action's call returns: where the action stands, and a sentence for the user."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from tripline_client.actions import Action
from tripline_client.errors import TriplineError
from tripline_client.outbox import Outcome

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
        return self._finished().result if self._outcome.done() else None

    @property
    def error(self) -> TriplineError | None:
        """Why the action failed for good, once it has."""
        return self._finished().error if self._outcome.done() else None

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
        as long as the platform is unreachable; bound it with ``asyncio.timeout`` if needed."""
        return await asyncio.shield(self._outcome)

    def _finished(self) -> Outcome:
        return self._outcome.result()

    def __repr__(self) -> str:
        return f"Delivery({self.action.kind}, {self.state}, id={self.action.id})"
