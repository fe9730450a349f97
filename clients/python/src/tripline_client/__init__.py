"""Tripline's Python SDK: calls that survive bad networks, an offline queue of critical actions
on disk, and live trip tracking. Start with :class:`tripline_client.Tripline`."""

from tripline_client._version import __version__
from tripline_client.actions import Action, ActionKind
from tripline_client.backoff import Backoff
from tripline_client.client import Tripline
from tripline_client.config import ClientConfig
from tripline_client.delivery import Delivery
from tripline_client.errors import TriplineError
from tripline_client.frames import TripEvent
from tripline_client.outbox_store import Outcome
from tripline_client.subscription import TripSubscription

__all__ = [
    "Action",
    "ActionKind",
    "Backoff",
    "ClientConfig",
    "Delivery",
    "Outcome",
    "TripEvent",
    "TripSubscription",
    "Tripline",
    "TriplineError",
    "__version__",
]
